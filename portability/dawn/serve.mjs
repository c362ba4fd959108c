// Replays imba's exported kernel cases in headless Chromium: serves page.html, runner.js and
// the export on 127.0.0.1, starts Chromium on the page, and waits for the page to post its
// summary. Usage: node serve.mjs [--default-limits] EXPORT_DIR [CHROMIUM]  (exit 1 on any
// failure; --default-limits: the page opens its device with WebGPU's default limits)
// Chromium's WebGPU on a machine without a GPU runs on SwiftShader.
import { createServer } from 'node:http';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { listExport } from './export.mjs';
import { headless, readPost, sendFile } from '../../scripts/chromium.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const defaultLimits = args.includes('--default-limits');
const [dir, browserArg] = args.filter((a) => !a.startsWith('--'));
const browser = browserArg ?? process.env.CHROMIUM ?? 'chromium';
if (!dir) {
  console.error('usage: node serve.mjs [--default-limits] EXPORT_DIR [CHROMIUM]');
  process.exit(2);
}
const listing = listExport(dir);
if (!listing.cases.length || !listing.moduleLines.length) {
  console.error(`${dir}: no exported cases or modules; run the tests with IMBA_CASES_DIR=${dir} first`);
  process.exit(2);
}

// The page's summary: exit 0 when every case passed.
function report(body) {
  let s;
  try {
    s = JSON.parse(body);
  } catch {
    return finish(1, `chromium: the page posted a summary that is not JSON: ${body.slice(0, 200)}`);
  }
  if (s.error) return finish(1, `chromium: ${s.error}`);
  console.log(`chromium: adapter ${s.adapter}`);
  finish(s.failed.length ? 1 : 0, `chromium: ${s.modules} modules, ${s.pipelines} pipelines, ${s.passed} passed, ${s.failed.length} failed`);
}

const json = (res, value) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
};
const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (req.method === 'POST') {
    return readPost(req, res, (body) => {
      if (url.pathname === '/log') console.log(body);
      if (url.pathname === '/result') report(body);
    });
  }
  if (url.pathname === '/') return sendFile(res, here, '/page.html');
  if (url.pathname === '/runner.js') return sendFile(res, here, '/runner.js');
  if (url.pathname === '/options') return json(res, { defaultLimits });
  if (url.pathname === '/export-list') return json(res, listing);
  if (url.pathname.startsWith('/export/')) return sendFile(res, dir, url.pathname.slice('/export'.length));
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('not found');
});
const chrome = headless({ browser, server, timeoutMs: 15 * 60 * 1000 });
const finish = chrome.finish;

server.listen(0, '127.0.0.1', () => {
  chrome.open(`http://127.0.0.1:${server.address().port}/`);
});
