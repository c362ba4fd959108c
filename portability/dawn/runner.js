// Replays imba's exported kernel cases on a WebGPU implementation. The same file runs in
// Node (dawn.node, see node.mjs) and in a browser page (page.html): it only needs a `GPU`
// object and a way to read the exported files.
//
// What it checks, in this order:
// 1. every module the launchers made (each family with each set of pipeline constants)
//    compiles with no error and no warning in its compilation info, and every pipeline made
//    from it is created with the launcher's bind-group layout;
// 2. every case: its buffers are created with the contents they had before the first
//    dispatch, the dispatches run in order with the same bindings and workgroup counts, and
//    each expected output is within the Rust test's tolerance of imba's f64 reference.
//
// The export is written by imba's tests with IMBA_CASES_DIR set (see docs/portability.md):
//   wgsl/FAMILY.wgsl      a family's WGSL, includes resolved
//   modules-PID.jsonl     one line per pipeline: family, entry, constants, slots
//   cases/NAME.json       buffers (base64), dispatches, checks

/** Decodes base64 to bytes, in Node and in a browser. */
function fromBase64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// The exported WGSL is as Tint takes it (imba::shaders::tint_source): a family that uses
// subgroup operations starts with `enable subgroups;` and needs the `subgroups` feature.
const needsSubgroups = (wgsl) => /^\s*enable\s+subgroups\s*;/m.test(wgsl);

function layoutEntry([binding, kind]) {
  const visibility = 4; // GPUShaderStage.COMPUTE
  switch (kind) {
    case 'uniform':
      return { binding, visibility, buffer: { type: 'uniform' } };
    case 'read':
      return { binding, visibility, buffer: { type: 'read-only-storage' } };
    case 'read_write':
      return { binding, visibility, buffer: { type: 'storage' } };
    case 'read_texture':
      return { binding, visibility, storageTexture: { access: 'read-only', format: 'rgba32float' } };
    case 'write_texture':
      return { binding, visibility, storageTexture: { access: 'write-only', format: 'rgba32float' } };
    default:
      throw new Error(`unknown slot kind ${kind}`);
  }
}

const pipelineKey = (p) => JSON.stringify([p.family, p.entry, p.constants, p.slots]);

/** Compiles modules and makes pipelines on one device, each once. */
class Compiler {
  constructor(device, sources) {
    this.device = device;
    this.sources = sources; // family -> WGSL
    this.modules = new Map(); // family -> {module, messages}
    this.pipelines = new Map(); // key -> GPUComputePipeline
    this.layouts = new Map(); // slots JSON -> GPUBindGroupLayout
  }

  async module(family) {
    if (!this.modules.has(family)) {
      const wgsl = this.sources.get(family);
      if (wgsl === undefined) throw new Error(`no WGSL exported for family ${family}`);
      const module = this.device.createShaderModule({ label: family, code: wgsl });
      const info = await module.getCompilationInfo();
      const messages = info.messages.filter((m) => m.type !== 'info').map((m) => `${m.type} ${m.lineNum}:${m.linePos} ${m.message}`);
      this.modules.set(family, { module, messages });
    }
    return this.modules.get(family);
  }

  layout(slots) {
    const key = JSON.stringify(slots);
    if (!this.layouts.has(key)) {
      this.layouts.set(key, this.device.createBindGroupLayout({ entries: slots.map(layoutEntry) }));
    }
    return this.layouts.get(key);
  }

  /** The pipeline of `p` (family, entry, constants, slots), or throws with Dawn's errors. */
  async pipeline(p) {
    const key = pipelineKey(p);
    if (this.pipelines.has(key)) return this.pipelines.get(key);
    const { module, messages } = await this.module(p.family);
    if (messages.length) throw new Error(`${p.family}: compilation info: ${messages.join('; ')}`);
    const constants = Object.fromEntries(p.constants);
    this.device.pushErrorScope('validation');
    const layout = this.device.createPipelineLayout({ bindGroupLayouts: [this.layout(p.slots)] });
    const pipeline = this.device.createComputePipeline({
      label: `${p.family}.${p.entry}`,
      layout,
      compute: { module, entryPoint: p.entry, constants },
    });
    const error = await this.device.popErrorScope();
    if (error) throw new Error(`${p.family}.${p.entry} ${JSON.stringify(p.constants)}: ${error.message}`);
    this.pipelines.set(key, pipeline);
    return pipeline;
  }
}

async function readBuffer(device, buffer, size) {
  const staging = device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(buffer, 0, staging, 0, size);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = new Uint8Array(staging.getMappedRange().slice(0));
  staging.unmap();
  staging.destroy();
  return out;
}

/** Replays one case; returns a list of failures (empty when it passes). */
async function replay(device, compiler, c) {
  // UNIFORM too: a case may bind a buffer at a uniform slot (the per-step values).
  const storage =
    GPUBufferUsage.STORAGE | GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const buffers = c.buffers.map((b) => {
    const size = Math.max(4, Math.ceil(b.size / 4) * 4);
    const buf = device.createBuffer({ size, usage: storage, mappedAtCreation: true });
    new Uint8Array(buf.getMappedRange()).set(fromBase64(b.data));
    buf.unmap();
    return buf;
  });
  const made = [...buffers];
  const failures = [];
  // Checks run where the Rust test read its buffer: after the first `after` dispatches.
  const checks = [...c.checks].sort((x, y) => x.after - y.after);
  let next = 0;
  for (let at = 0; at <= c.dispatches.length; at++) {
    const due = [];
    while (next < checks.length && checks[next].after === at) due.push(checks[next++]);
    for (const check of due) {
      const got = new Float32Array((await readBuffer(device, buffers[check.buffer], buffers[check.buffer].size)).buffer);
      const want = new Float32Array(fromBase64(check.want).buffer);
      for (let i = 0; i < check.count; i++) {
        const g = got[check.start + i];
        const w = want[i];
        const tol = check.atol + check.rtol * Math.abs(w);
        if (!(Math.abs(g - w) <= tol)) {
          failures.push(`${check.what}[${i}]: got ${g}, want ${w} (tol ${tol.toExponential(2)})`);
          break;
        }
      }
    }
    if (at === c.dispatches.length) break;
    const d = c.dispatches[at];
    const pipeline = await compiler.pipeline(d.pipeline);
    device.pushErrorScope('validation');
    const entries = d.bindings.map((b) => {
      if (b.uniform !== undefined) {
        const bytes = fromBase64(b.uniform);
        const size = Math.max(16, Math.ceil(bytes.length / 16) * 16);
        const ub = device.createBuffer({ size, usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true });
        new Uint8Array(ub.getMappedRange()).set(bytes);
        ub.unmap();
        made.push(ub);
        return { binding: b.binding, resource: { buffer: ub } };
      }
      return { binding: b.binding, resource: { buffer: buffers[b.buffer], offset: b.offset, size: b.size } };
    });
    const enc = device.createCommandEncoder();
    const group = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(...d.workgroups);
    pass.end();
    device.queue.submit([enc.finish()]);
    const error = await device.popErrorScope();
    if (error) {
      failures.push(`dispatch ${at} (${d.pipeline.family}.${d.pipeline.entry}): ${error.message}`);
      break;
    }
  }
  for (const b of made) b.destroy();
  return failures;
}

/**
 * Runs everything: `io.text(path)` reads an exported file, `io.list()` returns
 * {families, moduleLines, cases} (family names, the modules-*.jsonl lines, case file names).
 * `options.defaultLimits`: open the device with WebGPU's default limits (what a page gets
 * when it asks for nothing), for an export made under them (IMBA_LIMITS=webgpu); otherwise
 * with the adapter's. Returns a summary; `log` receives one line per failure and per stage.
 */
export async function runAll(gpu, io, log, options = {}) {
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new Error('no WebGPU adapter');
  const subgroups = adapter.features.has('subgroups');
  const requiredLimits = {};
  if (!options.defaultLimits) {
    for (const k in adapter.limits) requiredLimits[k] = adapter.limits[k];
  }
  const device = await adapter.requestDevice({
    requiredFeatures: subgroups ? ['subgroups'] : [],
    requiredLimits,
  });
  log(`device: ${options.defaultLimits ? "WebGPU's default limits" : "the adapter's limits"} ` +
    `(${device.limits.maxStorageBuffersPerShaderStage} storage buffers per stage, ` +
    `${device.limits.maxComputeWorkgroupStorageSize} bytes of workgroup memory)`);
  device.addEventListener?.('uncapturederror', (e) => log(`uncaptured error: ${e.error.message}`));
  const { families, moduleLines, cases } = await io.list();
  const sources = new Map();
  for (const f of families) sources.set(f, await io.text(`wgsl/${f}.wgsl`));
  const compiler = new Compiler(device, sources);
  const summary = { adapter: describe(adapter), modules: 0, pipelines: 0, cases: 0, passed: 0, failed: [] };

  const seen = new Set();
  for (const line of moduleLines) {
    const p = JSON.parse(line);
    const key = pipelineKey(p);
    if (seen.has(key)) continue;
    seen.add(key);
    if (needsSubgroups(sources.get(p.family) ?? '') && !subgroups) {
      summary.failed.push(`${p.family}.${p.entry}: needs subgroups, which this adapter lacks`);
      continue;
    }
    try {
      await compiler.pipeline(p);
      summary.pipelines += 1;
    } catch (e) {
      summary.failed.push(`pipeline ${e.message}`);
      log(`FAIL pipeline ${e.message}`);
    }
  }
  summary.modules = compiler.modules.size;
  log(`compiled ${summary.modules} modules, created ${summary.pipelines} pipelines`);

  for (const name of cases) {
    const c = JSON.parse(await io.text(`cases/${name}`));
    summary.cases += 1;
    let failures;
    try {
      failures = await replay(device, compiler, c);
    } catch (e) {
      failures = [String(e.message ?? e)];
    }
    if (failures.length) {
      summary.failed.push(`case ${c.name}: ${failures.join('; ')}`);
      log(`FAIL case ${c.name}: ${failures.join('; ')}`);
    } else {
      summary.passed += 1;
    }
  }
  log(`replayed ${summary.cases} cases: ${summary.passed} passed, ${summary.cases - summary.passed} failed`);
  device.destroy();
  return summary;
}

function describe(adapter) {
  const i = adapter.info ?? {};
  return [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' / ') || 'unknown adapter';
}
