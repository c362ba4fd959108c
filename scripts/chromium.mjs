// Headless Chromium with WebGPU for imba's browser runs (the page's test in web/serve.mjs and
// the kernel replay in portability/dawn/serve.mjs): files served from a folder without
// escaping it, one browser started with its own profile folder and a deadline, the DevTools
// protocol over its pipe (no packages), and one way to finish that leaves nothing behind.
// Chromium's WebGPU on a machine without a GPU runs on SwiftShader.
import { readFileSync, writeFileSync, existsSync, rmSync, statSync } from 'node:fs';
import { join, normalize, extname } from 'node:path';
import { spawn } from 'node:child_process';

const TYPES = {
  '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.json': 'application/json', '.wasm': 'application/wasm', '.wgsl': 'text/plain',
  '.jsonl': 'text/plain', '.safetensors': 'application/octet-stream',
};

// Answers with the file at URL path `pathname` under `root`, or 404 for a path that is
// missing, not a file, malformed or outside `root` (the servers face any local client).
export function sendFile(res, root, pathname) {
  let rel;
  try {
    rel = normalize(decodeURIComponent(pathname)).replace(/^\/+/, '');
  } catch {
    rel = '..'; // a malformed escape: answered as not found
  }
  const path = join(root, rel);
  if (rel.startsWith('..') || !existsSync(path) || !statSync(path).isFile()) {
    res.writeHead(404, { 'content-type': 'text/plain' });
    return res.end('not found');
  }
  res.writeHead(200, { 'content-type': TYPES[extname(path)] ?? 'application/octet-stream' });
  res.end(readFileSync(path));
}

// Reads a POST's body and answers it; `then(body)` gets the text.
export function readPost(req, res, then) {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
    then(body);
  });
}

// The DevTools protocol over --remote-debugging-pipe: JSON messages ended by a NUL byte,
// written to Chromium's fd 3 and read from its fd 4.
function devtools(child) {
  let next = 1;
  let buffer = '';
  const waiting = new Map();
  child.stdio[4].on('data', (chunk) => {
    buffer += chunk.toString();
    let end;
    while ((end = buffer.indexOf('\0')) >= 0) {
      const msg = JSON.parse(buffer.slice(0, end));
      buffer = buffer.slice(end + 1);
      if (msg.id && waiting.has(msg.id)) {
        const { resolve, reject } = waiting.get(msg.id);
        waiting.delete(msg.id);
        if (msg.error) reject(new Error(msg.error.message));
        else resolve(msg.result);
      }
    }
  });
  return (method, params = {}, sessionId) =>
    new Promise((resolve, reject) => {
      const id = next++;
      waiting.set(id, { resolve, reject });
      child.stdio[3].write(JSON.stringify({ id, method, params, sessionId }) + '\0');
    });
}

// One headless Chromium for `server`'s page. `finish(code, message)` prints the message,
// kills the browser, removes its profile folder, closes the server and exits with `code`;
// the browser failing to start, exiting early or passing `timeoutMs` finishes with 2, 1, 1.
export function headless({ browser, server, timeoutMs, name = 'imba-chromium' }) {
  let child;
  let send;
  const profile = join(process.env.TMPDIR ?? '/tmp', `${name}-${process.pid}`);
  const finish = (code, message) => {
    if (message) console.log(message);
    if (child && child.exitCode === null) child.kill('SIGKILL');
    server.close();
    try {
      rmSync(profile, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // A profile the killed browser was still writing: a leftover in the temp folder.
    }
    process.exit(code);
  };
  // Opens `url`; `webgpu: false` starts a browser without it (the page must refuse).
  const open = (url, { webgpu = true, windowSize = '1100,1500' } = {}) => {
    const gpu = webgpu ? ['--enable-unsafe-webgpu', '--enable-features=Vulkan'] : ['--disable-gpu'];
    child = spawn(browser, [
      '--headless=new', '--no-sandbox', ...gpu, '--disable-gpu-sandbox', '--no-first-run',
      '--remote-debugging-pipe', `--window-size=${windowSize}`, `--user-data-dir=${profile}`, url,
    ], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
    send = devtools(child);
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', (e) => finish(2, `cannot start ${browser}: ${e.message} (Debian: apt-get install chromium)`));
    child.on('exit', (code) => finish(1, `chromium exited (${code}) before the page reported:\n${stderr.slice(-2000)}`));
    setTimeout(() => finish(1, `no result after ${timeoutMs / 1000} s:\n${stderr.slice(-2000)}`), timeoutMs);
  };
  // A PNG of the whole page.
  const screenshot = async (path) => {
    const { targetInfos } = await send('Target.getTargets');
    const page = targetInfos.find((t) => t.type === 'page');
    const { sessionId } = await send('Target.attachToTarget', { targetId: page.targetId, flatten: true });
    const shot = await send('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true }, sessionId);
    writeFileSync(path, Buffer.from(shot.data, 'base64'));
  };
  return { finish, open, screenshot };
}
