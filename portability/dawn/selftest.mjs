// Shows that the runner can fail: replays one exported case with its expected values
// changed, and one module with a WGSL error, and exits 1 unless both are reported as
// failures. Usage: node selftest.mjs EXPORT_DIR
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { create, globals } from 'webgpu';
import { runAll } from './runner.js';
import { listExport } from './export.mjs';

const dir = process.argv[2];
Object.assign(globalThis, globals);
const listing = listExport(dir);
const first = listing.cases[0];
const family = listing.families[0];
const io = {
  list: async () => ({ ...listing, cases: [first] }),
  text: async (path) => {
    const text = readFileSync(join(dir, path), 'utf8');
    if (path === `cases/${first}`) {
      // Every expected value of every check moved by 1 + 10 % of itself.
      const c = JSON.parse(text);
      for (const check of c.checks) {
        const want = new Float32Array(Buffer.from(check.want, 'base64').buffer.slice(0));
        for (let i = 0; i < want.length; i++) want[i] = want[i] * 1.1 + 1;
        check.want = Buffer.from(want.buffer).toString('base64');
      }
      return JSON.stringify(c);
    }
    if (path === `wgsl/${family}.wgsl`) return `${text}\nfn broken( {`;
    return text;
  },
};
const summary = await runAll(create([]), io, () => {});
const caseFailed = summary.failed.some((f) => f.startsWith(`case `));
const moduleFailed = summary.failed.some((f) => f.includes(`${family}`) && f.startsWith('pipeline'));
console.log(`self-test: changed expectations ${caseFailed ? 'caught' : 'MISSED'}, broken ${family}.wgsl ${moduleFailed ? 'caught' : 'MISSED'}`);
process.exit(caseFailed && moduleFailed ? 0 : 1);
