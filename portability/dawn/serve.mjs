// Replays imba's exported kernel cases in headless Chromium: serves page.html, runner.js and
// the export on 127.0.0.1, starts Chromium on the page, and waits for the page to post its
// summary. Usage: node serve.mjs [--default-limits] EXPORT_DIR [CHROMIUM]  (exit 1 on any
// failure; --default-limits: the page opens its device with WebGPU's default limits)
// Chromium's WebGPU on a machine without a GPU runs on SwiftShader.
import { createServer } from 'node:http';
import { readFileSync, existsSync, rmSync } from 'node:fs';
import { join, normalize, dirname } from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { listExport } from './export.mjs';

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
const TIMEOUT_MS = 15 * 60 * 1000;

let chrome;
const profile = join(process.env.TMPDIR ?? '/tmp', `imba-chromium-${process.pid}`);
function finish(code, message) {
  if (message) console.log(message);
  if (chrome && chrome.exitCode === null) chrome.kill('SIGKILL');
  server.close();
  try {
    rmSync(profile, { recursive: true, force: true, maxRetries: 3 });
  } catch {
    // A profile the killed browser was still writing: a leftover in the temp folder.
  }
  process.exit(code);
}

const types = { '.html': 'text/html', '.js': 'text/javascript', '.json': 'application/json', '.wgsl': 'text/plain', '.jsonl': 'text/plain' };
const server = createServer((req, res) => {
  const send = (status, type, body) => {
    res.writeHead(status, { 'content-type': type });
    res.end(body);
  };
  const url = new URL(req.url, 'http://127.0.0.1');
  if (req.method === 'POST') {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      send(200, 'text/plain', 'ok');
      if (url.pathname === '/log') console.log(body);
      if (url.pathname === '/result') {
        const s = JSON.parse(body);
        if (s.error) finish(1, `chromium: ${s.error}`);
        console.log(`chromium: adapter ${s.adapter}`);
        finish(s.failed.length ? 1 : 0, `chromium: ${s.modules} modules, ${s.pipelines} pipelines, ${s.passed} passed, ${s.failed.length} failed`);
      }
    });
    return;
  }
  if (url.pathname === '/') return send(200, types['.html'], readFileSync(join(here, 'page.html')));
  if (url.pathname === '/options') return send(200, types['.json'], JSON.stringify({ defaultLimits }));
  if (url.pathname === '/runner.js') return send(200, types['.js'], readFileSync(join(here, 'runner.js')));
  if (url.pathname === '/export-list') return send(200, types['.json'], JSON.stringify(listing));
  if (url.pathname.startsWith('/export/')) {
    const rel = normalize(decodeURIComponent(url.pathname.slice('/export/'.length)));
    const path = join(dir, rel);
    if (rel.startsWith('..') || !existsSync(path)) return send(404, 'text/plain', 'not found');
    return send(200, types[rel.slice(rel.lastIndexOf('.'))] ?? 'application/octet-stream', readFileSync(path));
  }
  send(404, 'text/plain', 'not found');
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const args = [
    '--headless=new',
    '--no-sandbox',
    '--enable-unsafe-webgpu',
    '--enable-features=Vulkan',
    '--disable-gpu-sandbox',
    '--no-first-run',
    `--user-data-dir=${profile}`,
    `http://127.0.0.1:${port}/`,
  ];
  chrome = spawn(browser, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  chrome.stderr.on('data', (d) => (stderr += d));
  chrome.on('error', (e) => finish(2, `cannot start ${browser}: ${e.message} (Debian: apt-get install chromium)`));
  chrome.on('exit', (code) => finish(1, `chromium exited (${code}) before the page reported:\n${stderr.slice(-2000)}`));
  setTimeout(() => finish(1, `no result after ${TIMEOUT_MS / 1000} s:\n${stderr.slice(-2000)}`), TIMEOUT_MS);
});
