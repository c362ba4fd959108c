// Replays imba's exported kernel cases on Dawn in Node (the `webgpu` package's dawn.node).
// Usage: node node.mjs [--default-limits] EXPORT_DIR
//   (exits 1 if anything failed, 2 if nothing was exported; --default-limits: open the
//   device with WebGPU's default limits, for an export made with IMBA_LIMITS=webgpu)
// On a machine without a GPU, point the Vulkan loader at SwiftShader first:
//   VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json node node.mjs target/cases
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { create, globals } from 'webgpu';
import { runAll } from './runner.js';
import { listExport } from './export.mjs';

const args = process.argv.slice(2);
const defaultLimits = args.includes('--default-limits');
const dir = args.find((a) => !a.startsWith('--'));
if (!dir) {
  console.error('usage: node node.mjs [--default-limits] EXPORT_DIR (written by the tests with IMBA_CASES_DIR set)');
  process.exit(2);
}
Object.assign(globalThis, globals);

const io = {
  list: async () => listExport(dir),
  text: async (path) => readFileSync(join(dir, path), 'utf8'),
};
const listing = listExport(dir);
if (!listing.cases.length || !listing.moduleLines.length) {
  console.error(`${dir}: no exported cases or modules; run the tests with IMBA_CASES_DIR=${dir} first`);
  process.exit(2);
}
const summary = await runAll(create([]), io, (line) => console.log(line), { defaultLimits });
console.log(`dawn (node): adapter ${summary.adapter}`);
console.log(`dawn (node): ${summary.modules} modules, ${summary.pipelines} pipelines, ${summary.passed} passed, ${summary.failed.length} failed`);
process.exit(summary.failed.length ? 1 : 0);
