// Every module the page loads must parse as an ES module: a syntax error
// anywhere would leave the page blank in the browser.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../static/js');

test('every UI module parses as an ES module', () => {
  const files = readdirSync(dir).filter((f) => f.endsWith('.js'));
  assert.ok(files.length >= 10, `found ${files.length} modules in ${dir}`);
  for (const f of files) {
    const r = spawnSync(process.execPath, ['--input-type=module', '--check'], { input: readFileSync(path.join(dir, f)) });
    assert.equal(r.status, 0, `${f} does not parse:\n${r.stderr}`);
  }
});
