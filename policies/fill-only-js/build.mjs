// Builds fill-only.js into the component fill-only.wasm with componentize-js
// (npm). The WIT is the repository's: the 0.2.0 world, with the 0.1.0
// package it imports laid out as a dependency, as componentize-js reads it.
//
//   npm install && npm run build
//
// Only `stdio` (console.log goes to stash2plex's log through WASI stdout),
// `random` and `clocks` of the engine's WASI features are kept; `http` and
// `fetch-event` are off (the host links no wasi:http: a policy reaches Plex
// only through the world's `plex` import).
import { componentize } from '@bytecodealliance/componentize-js';
import { cpSync, mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const here = new URL('.', import.meta.url).pathname;
const wit = mkdtempSync(join(tmpdir(), 'stash2plex-wit-'));
cpSync(join(here, '../../wit/since_v0.2.0/policy.wit'), join(wit, 'policy.wit'));
mkdirSync(join(wit, 'deps/stash2plex-policy-0.1.0'), { recursive: true });
cpSync(join(here, '../../wit/since_v0.1.0/policy.wit'), join(wit, 'deps/stash2plex-policy-0.1.0/policy.wit'));

const started = Date.now();
const { component } = await componentize({
  sourcePath: join(here, 'fill-only.js'),
  witPath: wit,
  worldName: 'policy-component',
  disableFeatures: ['http', 'fetch-event'],
});
writeFileSync(join(here, 'fill-only.wasm'), component);
console.log(`fill-only.wasm: ${component.length} bytes in ${Date.now() - started} ms`);
