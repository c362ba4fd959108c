// The page: opens the tab's WebGPU device through imba's WebAssembly module (pkg/, built by
// scripts/build-web.sh), trains the default model with a live loss curve, D against label
// frequency and sample grids, and samples from a checkpoint the visitor chooses.
// With ?test, it runs the scenario of test/spec.json instead and posts its results to the
// local test server (web/serve.mjs), which compares them with the native run's.
import init, { open_device, Model, Run } from './pkg/imba_web.js';

const $ = (id) => document.getElementById(id);

function status(text, error = false) {
  $('status').textContent = text;
  $('status').className = error ? 'error' : '';
}

// Draws a grid of images (n, C, H, W) in [−1, 1] with one row per `cols` samples and a row
// title at its left (`titles[row]`).
function drawGrid(canvas, samples, titles) {
  // Each getter of the module's Samples copies out of WebAssembly: read every one once.
  const s = {
    images: samples.images, cols: samples.cols, channels: samples.channels,
    height: samples.height, width: samples.width,
  };
  const scale = Math.max(1, Math.floor(48 / Math.max(s.height, s.width)));
  const n = s.images.length / (s.channels * s.height * s.width);
  const rows = Math.ceil(n / s.cols);
  const cell = s.width * scale + 2;
  const left = titles ? 210 : 0;
  canvas.width = left + s.cols * cell;
  canvas.height = rows * (s.height * scale + 2);
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const plane = s.height * s.width;
  const img = ctx.createImageData(s.width, s.height);
  const tmp = new OffscreenCanvas(s.width, s.height);
  const tctx = tmp.getContext('2d');
  ctx.imageSmoothingEnabled = false;
  for (let i = 0; i < n; i++) {
    const base = i * s.channels * plane;
    for (let p = 0; p < plane; p++) {
      for (let c = 0; c < 3; c++) {
        const ch = s.channels === 1 ? 0 : c;
        const v = s.images[base + ch * plane + p];
        img.data[4 * p + c] = Math.round(Math.min(1, Math.max(0, (v + 1) / 2)) * 255);
      }
      img.data[4 * p + 3] = 255;
    }
    tctx.putImageData(img, 0, 0);
    const [r, col] = [Math.floor(i / s.cols), i % s.cols];
    ctx.drawImage(tmp, left + col * cell, r * (s.height * scale + 2), s.width * scale, s.height * scale);
  }
  if (titles) {
    ctx.fillStyle = '#222';
    ctx.font = '12px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    titles.forEach((t, r) => ctx.fillText(t, 4, r * (s.height * scale + 2) + (s.height * scale) / 2));
  }
}

// A line or scatter plot on a canvas: `series` of {points: [[x, y]], colour, dots}.
function plot(canvas, series, { xlabel, ylabel, logx = false }) {
  const ctx = canvas.getContext('2d');
  const [w, h, m] = [canvas.width, canvas.height, { l: 48, r: 10, t: 10, b: 34 }];
  ctx.clearRect(0, 0, w, h);
  const tx = (x) => (logx ? Math.log10(x) : x);
  const all = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(y) && x > (logx ? 0 : -Infinity));
  if (!all.length) return;
  let [x0, x1] = [Math.min(...all.map((p) => tx(p[0]))), Math.max(...all.map((p) => tx(p[0])))];
  let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (x1 === x0) [x0, x1] = [x0 - 1, x1 + 1];
  if (y1 === y0) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const pad = (y1 - y0) * 0.05;
  [y0, y1] = [y0 - pad, y1 + pad];
  const X = (x) => m.l + ((tx(x) - x0) / (x1 - x0)) * (w - m.l - m.r);
  const Y = (y) => h - m.b - ((y - y0) / (y1 - y0)) * (h - m.t - m.b);
  ctx.strokeStyle = '#999';
  ctx.strokeRect(m.l, m.t, w - m.l - m.r, h - m.t - m.b);
  ctx.fillStyle = '#444';
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillText(y1.toPrecision(3), 2, m.t + 8);
  ctx.fillText(y0.toPrecision(3), 2, h - m.b);
  const xl = (v) => {
    const x = logx ? 10 ** v : v;
    return Number.isInteger(Math.round(x * 1e6) / 1e6) ? String(Math.round(x)) : x.toPrecision(3);
  };
  ctx.fillText(xl(x0), m.l, h - m.b + 13);
  ctx.fillText(xl(x1), w - m.r - 30, h - m.b + 13);
  ctx.fillText(xlabel, w / 2 - 40, h - 4);
  ctx.save();
  ctx.translate(12, h / 2 + 20);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText(ylabel, 0, 0);
  ctx.restore();
  for (const s of series) {
    ctx.strokeStyle = ctx.fillStyle = s.colour;
    const pts = s.points.filter(([x, y]) => Number.isFinite(y) && (!logx || x > 0));
    if (s.dots) {
      pts.forEach(([x, y]) => ctx.fillRect(X(x) - 3, Y(y) - 3, 6, 6));
    } else {
      ctx.beginPath();
      pts.forEach(([x, y], i) => (i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
      ctx.stroke();
    }
  }
}

// Mean D of each label against its training images (log scale).
function drawD(d) {
  const pts = d.filter((l) => l.mean_d !== null).map((l) => [l.count, l.mean_d]);
  plot($('dplot'), [{ points: pts, colour: '#b8481f', dots: true }], {
    xlabel: 'training images of the label (log)', ylabel: 'mean D', logx: true,
  });
}

// ---- the live training view ----

function trainingView(device) {
  let run = null;
  let running = false;
  const losses = [];
  const drawLoss = () => {
    let mean = null;
    const smooth = losses.map(([x, y]) => [x, (mean = mean === null ? y : 0.98 * mean + 0.02 * y)]);
    plot($('loss'), [
      { points: losses, colour: '#bbb' },
      { points: smooth, colour: '#1f5fa8' },
    ], { xlabel: 'step', ylabel: 'loss' });
  };
  const sampleNow = async () => {
    const grid = await run.sample(4, 0, 1.5, 50);
    const d = JSON.parse(run.d_by_label());
    drawGrid($('train-grid'), grid, d.map((l) => `${l.name} (${l.count} images)`));
    $('train-grid-title').textContent = `Samples at step ${run.step()} (EMA weights, guidance 1.5), one row per class`;
  };
  const loop = async () => {
    try {
      run ??= new Run(device, '');
      running = true;
      const every = () => Math.max(50, Number($('sample-every').value) || 250);
      while (running && run.step() < run.total_steps()) {
        const stats = JSON.parse(await run.steps(10));
        for (const s of stats) losses.push([s.step, s.loss]);
        const last = stats[stats.length - 1];
        $('train-progress').textContent =
          `step ${run.step()} of ${run.total_steps()} · loss ${last.loss.toFixed(4)} · ${last.ms.toFixed(0)} ms/step`;
        drawLoss();
        drawD(JSON.parse(run.d_by_label()));
        if (run.step() % every() < 10 || run.step() === run.total_steps()) await sampleNow();
      }
    } catch (e) {
      status(`Training stopped: ${e.message ?? e}`, true);
    }
    running = false;
    $('train-start').disabled = false;
  };
  $('train-start').onclick = () => {
    $('train-start').disabled = true;
    $('train-pause').disabled = false;
    loop();
  };
  $('train-pause').onclick = () => {
    running = false;
    $('train-pause').disabled = true;
  };
  $('train-start').disabled = false;
}

// ---- sampling from a checkpoint ----

function samplingView(device) {
  let model = null;
  const load = (name, bytes) => {
    try {
      model = new Model(name, bytes);
      $('model-title').textContent = `${name}: ${model.label_names().length} labels, ${model.describe()}`;
      $('sample').disabled = false;
    } catch (e) {
      status(`Cannot use ${name}: ${e.message ?? e}`, true);
    }
  };
  $('file').onchange = async () => {
    const f = $('file').files[0];
    if (f) load(f.name, new Uint8Array(await f.arrayBuffer()));
  };
  $('bundled').onclick = async () => {
    const r = await fetch('test/tiny.safetensors');
    load('tiny.safetensors', new Uint8Array(await r.arrayBuffer()));
  };
  $('sample').onclick = async () => {
    $('sample').disabled = true;
    try {
      const n = (id) => Number($(id).value);
      const grid = await model.sample(device, n('per-label'), n('seed'), n('guidance'), n('steps'));
      drawGrid($('model-grid'), grid, model.label_names());
    } catch (e) {
      status(`Sampling failed: ${e.message ?? e}`, true);
    }
    $('sample').disabled = false;
  };
  $('bundled').disabled = false;
}

// ---- the browser test (?test) ----

async function post(path, body) {
  await fetch(path, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });
}

async function selfTest(device) {
  const spec = await (await fetch('test/spec.json')).json();
  const bytes = new Uint8Array(await (await fetch(`test/${spec.checkpoint}`)).arrayBuffer());
  const model = new Model(spec.checkpoint, bytes);
  const s = spec.sample;
  // Timed twice, as the native run is: the first call also compiles the model's pipelines.
  let t0 = performance.now();
  const grid = await model.sample(device, s.per_label, s.seed, s.guidance, s.steps);
  const sampleMs = performance.now() - t0;
  t0 = performance.now();
  await model.sample(device, s.per_label, s.seed, s.guidance, s.steps);
  const sampleAgainMs = performance.now() - t0;
  drawGrid($('model-grid'), grid, model.label_names());
  $('model-title').textContent = `${spec.checkpoint} (${model.describe()}): the test's grid`;
  const run = new Run(device, spec.train.config);
  t0 = performance.now();
  const train = JSON.parse(await run.steps(spec.train.steps));
  const trainMs = performance.now() - t0;
  for (const st of train) $('train-progress').textContent = `step ${st.step} · loss ${st.loss.toFixed(4)}`;
  plot($('loss'), [{ points: train.map((st) => [st.step, st.loss]), colour: '#1f5fa8' }], { xlabel: 'step', ylabel: 'loss' });
  const d = JSON.parse(run.d_by_label());
  drawD(d);
  await post('/result', {
    adapter: device.adapter(),
    describe: device.describe(),
    sample: { images: Array.from(grid.images), labels: Array.from(grid.labels), cols: grid.cols },
    train,
    d_by_label: d,
    ms: { sample: sampleMs, sample_again: sampleAgainMs, train: trainMs },
  });
}

async function main() {
  const test = new URLSearchParams(location.search).has('test');
  if (!navigator.gpu) {
    const why = 'This browser gives the page no WebGPU (navigator.gpu is absent). Use a recent ' +
      'Chrome, Edge or Safari, or Firefox with WebGPU enabled; on Linux, Chrome needs ' +
      '--enable-unsafe-webgpu (and Vulkan) for now.';
    status(why, true);
    if (test) await post('/result', { error: why });
    return;
  }
  try {
    await init();
    const device = await open_device(false);
    status(`WebGPU adapter: ${device.adapter()}`);
    if (test) return await selfTest(device);
    trainingView(device);
    samplingView(device);
  } catch (e) {
    const msg = `${e.message ?? e}`;
    status(`imba could not start: ${msg}`, true);
    if (test) await post('/result', { error: msg });
  }
}

main();
