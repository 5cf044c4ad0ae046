// SPDX-License-Identifier: BSL-1.0
// Node.js side of the spawn benchmarks, run by bench_spawn_wait, bench_many and run.py.
//
//   node spawn_peer.js spawnsync CHILD N ROUNDS SIZES   N x spawnSync(CHILD) per round (stdio: pipes,
//                                                       captured: Node's default); microseconds each
//   node spawn_peer.js inflight CHILD N ROUNDS          N children per round, 8 at once (spawn +
//                                                       'exit', stdio inherited); children per second
//
// SIZES: comma-separated MiB the process touches before its rounds, ascending ("0" = as started),
// grown in place so each size is touched once. Prints "FIGURE key=value unit" lines; times only
// the spawning, never Node's start-up or the touching.
'use strict';
const { spawn, spawnSync } = require('child_process');

const [mode, child, nArg, roundsArg, sizesArg] = process.argv.slice(2);
const n = Number(nArg), rounds = Number(roundsArg);
if (!child || !(n > 0) || !(rounds > 0)) {
  console.error('usage: node spawn_peer.js spawnsync|inflight CHILD N ROUNDS [SIZES]');
  process.exit(2);
}
const now = () => Number(process.hrtime.bigint()) / 1e9;

function spawnSyncRound(count) {
  const t0 = now();
  for (let i = 0; i < count; ++i) {
    const r = spawnSync(child);
    if (r.error || r.status !== 0) throw r.error || new Error(`child exited ${r.status}`);
  }
  return now() - t0;
}

function inflightRound(count) {
  return new Promise((resolve, reject) => {
    const t0 = now();
    let started = 0, ended = 0;
    const next = () => {
      if (started === count) return;
      ++started;
      const c = spawn(child, [], { stdio: 'inherit' });
      c.on('error', reject);
      c.on('exit', (code) => {
        if (code !== 0) return reject(new Error(`child exited ${code}`));
        if (++ended === count) resolve(now() - t0);
        else next();
      });
    };
    for (let i = 0; i < Math.min(8, count); ++i) next();
  });
}

// Memory touched, in 1 GiB Buffers (a Buffer is capped at 4 GiB); filled, so every page is resident.
const ballast = [];
let touchedMiB = 0;
function growTo(mib) {
  while (touchedMiB < mib) {
    const step = Math.min(1024, mib - touchedMiB);
    ballast.push(Buffer.alloc(step * 1048576, 1));
    touchedMiB += step;
  }
}

async function main() {
  if (mode === 'spawnsync') {
    const sizes = (sizesArg || '0').split(',').map(Number);
    for (const mib of sizes) {
      growTo(mib);
      const label = mib ? `${mib}M` : 'small';
      spawnSyncRound(Math.min(n, 5));  // warm-up
      for (let r = 0; r < rounds; ++r)
        console.log(`FIGURE spawn.${label}.node_spawnsync=${(spawnSyncRound(n) / n * 1e6).toPrecision(6)} us`);
    }
  } else if (mode === 'inflight') {
    await inflightRound(Math.min(n, 16));  // warm-up
    for (let r = 0; r < rounds; ++r)
      console.log(`FIGURE many.node=${(n / await inflightRound(n)).toPrecision(6)} /s`);
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
}
main().catch((e) => { console.error(e.message); process.exit(1); });
