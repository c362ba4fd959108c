// The listing of an export folder written by imba's tests (IMBA_CASES_DIR): families with
// WGSL, the module lines of every test process, and the case files.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export function listExport(dir) {
  const families = readdirSync(join(dir, 'wgsl'))
    .filter((f) => f.endsWith('.wgsl'))
    .map((f) => f.slice(0, -5))
    .sort();
  const moduleLines = readdirSync(dir)
    .filter((f) => f.startsWith('modules-') && f.endsWith('.jsonl'))
    .sort()
    .flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n').filter(Boolean));
  const cases = readdirSync(join(dir, 'cases'))
    .filter((f) => f.endsWith('.json'))
    .sort();
  return { families, moduleLines, cases };
}
