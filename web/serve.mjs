// Serves the page (web/) on 127.0.0.1 and, for the browser test, drives headless Chromium.
//
//   node web/serve.mjs [--port N]
//       serves the page for a browser of your own (open the printed address).
//   node web/serve.mjs --test NATIVE.json [--same-bits NATIVE2.json] [--screenshot PNG]
//                      [--result JSON] [--chromium BIN]
//       opens the page with ?test in headless Chromium (WebGPU on; on a machine without a GPU,
//       SwiftShader), waits for its results, takes a screenshot, and compares them with the
//       native run of the same scenario (`cargo run --example live -- web/test/spec.json`
//       wrote NATIVE.json) within test/spec.json's tolerances, and with NATIVE2.json (the
//       native run on the browser's own Vulkan implementation) bit for bit. Exit 0: they
//       match; 1: they differ or the page failed; 2: a usage or set-up error.
// No packages: Node's own http server, and the DevTools protocol over Chromium's pipe.
import { createServer } from 'node:http';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { headless, readPost, sendFile } from '../scripts/chromium.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const testNative = opt('--test');
// The page's refusal: Chromium without WebGPU must get a message naming what is missing.
const withoutWebgpu = args.includes('--without-webgpu');
const browser = opt('--chromium') ?? process.env.CHROMIUM ?? 'chromium';

if (!existsSync(join(here, 'pkg', 'imba_web_bg.wasm'))) {
  console.error('web/pkg is missing: build the page first (scripts/build-web.sh)');
  process.exit(2);
}

let onResult = () => {};
const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (req.method !== 'POST') return sendFile(res, here, url.pathname === '/' ? '/index.html' : url.pathname);
  readPost(req, res, (body) => {
    if (url.pathname !== '/result' || !testNative) return;
    let result;
    try {
      result = JSON.parse(body);
    } catch {
      result = { error: `the page posted a result that is not JSON: ${body.slice(0, 200)}` };
    }
    onResult(result);
  });
});
const chrome = headless({ browser, server, timeoutMs: 10 * 60 * 1000, name: 'imba-web' });
const finish = chrome.finish;

// The page's results against the native run's: every image value, every step's loss.
function compare(page, native, tolerance) {
  const failures = [];
  const a = page.sample.images;
  const b = native.sample.images;
  let [maxDiff, sum] = [0, 0];
  if (a.length !== b.length) failures.push(`the page drew ${a.length} image values, the native run ${b.length}`);
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= maxDiff)) maxDiff = Number.isFinite(d) ? d : Infinity;
    sum += d;
  }
  const identical = a.length === b.length && a.every((v, i) => v === b[i]);
  console.log(`samples: ${a.length} values, max |Δ| ${maxDiff.toExponential(2)}, mean |Δ| ${(sum / Math.max(1, a.length)).toExponential(2)}${identical ? ' (identical bits)' : ''}`);
  // Not bit for bit: the page's adapter runs the portable kernels (no subgroups), whose sums
  // round in another order, and 20 sampler steps carry the difference along.
  const mean = sum / Math.max(1, a.length);
  if (!(maxDiff <= tolerance.image_max)) failures.push(`sample values differ by up to ${maxDiff} (tolerance ${tolerance.image_max})`);
  if (!(mean <= tolerance.image_mean)) failures.push(`sample values differ by ${mean} on average (tolerance ${tolerance.image_mean})`);
  if (page.train.length !== native.train.length) failures.push(`the page ran ${page.train.length} steps, the native run ${native.train.length}`);
  page.train.forEach((s, i) => {
    const n = native.train[i];
    if (!n) return;
    // Both are f32 values; JSON wrote the page's shortest and the native run's as f64.
    const [x, y] = [Math.fround(s.loss), Math.fround(n.loss)];
    const rel = Math.abs(x - y) / Math.max(Math.abs(y), 1e-12);
    const same = x === y ? 'the same f32' : `relative Δ ${rel.toExponential(2)}`;
    console.log(`step ${s.step}: loss ${Math.fround(s.loss)} (native ${Math.fround(n.loss)}: ${same}), ${s.ms.toFixed(1)} ms (native ${n.ms.toFixed(1)} ms)`);
    if (!(rel <= tolerance.loss_rel)) failures.push(`step ${s.step}'s loss differs by ${rel.toExponential(2)} relative (tolerance ${tolerance.loss_rel})`);
  });
  return failures;
}

server.listen(Number(opt('--port') ?? 0), '127.0.0.1', () => {
  const { port } = server.address();
  const address = `http://127.0.0.1:${port}/`;
  if (!testNative) {
    console.log(`serving the page at ${address} (Ctrl-C stops)`);
    return;
  }
  const native = JSON.parse(readFileSync(testNative, 'utf8'));
  const spec = JSON.parse(readFileSync(join(here, 'test', 'spec.json'), 'utf8'));
  chrome.open(`${address}?test`, { webgpu: !withoutWebgpu });
  onResult = async (page) => {
    if (withoutWebgpu) {
      const named = /WebGPU/.test(page.error ?? '') && /enable-unsafe-webgpu|Chrome|browser/.test(page.error);
      if (named) return finish(0, `without WebGPU the page refuses: ${page.error}`);
      return finish(1, `without WebGPU the page should refuse, naming WebGPU; it reported ${JSON.stringify(page).slice(0, 300)}`);
    }
    if (page.error) return finish(1, `the page failed: ${page.error}`);
    console.log(`browser adapter: ${page.adapter}; native: ${native.adapter}`);
    const times = (r) => `sampling ${r.ms.sample.toFixed(0)} ms (again: ${r.ms.sample_again.toFixed(0)} ms), ${r.train.length} training steps ${r.ms.train.toFixed(0)} ms`;
    console.log(`browser: ${times(page)}\nnative: ${times(native)}`);
    if (opt('--result')) writeFileSync(opt('--result'), JSON.stringify(page));
    try {
      if (opt('--screenshot')) await chrome.screenshot(opt('--screenshot'));
    } catch (e) {
      console.log(`no screenshot: ${e.message}`);
    }
    const failures = compare(page, native, spec.tolerance);
    if (opt('--same-bits')) {
      const twin = JSON.parse(readFileSync(opt('--same-bits'), 'utf8'));
      console.log(`bit for bit against the native run on ${twin.adapter}:`);
      const exact = { image_max: 0, image_mean: 0, loss_rel: 0 };
      failures.push(...compare(page, twin, exact).map((f) => `against ${twin.adapter}: ${f}`));
    }
    if (failures.length) finish(1, `the page and the native run differ:\n  ${failures.join('\n  ')}`);
    finish(0, 'the page matches the native run');
  };
});
