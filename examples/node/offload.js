// A Node program that hands a CPU-heavy job to a C++ worker and stays responsive meanwhile:
// the timer keeps ticking while the worker looks for the longest Collatz chain.
//   node offload.js path/to/collatz_worker [N=3000000]
const { fork } = require('child_process');

const [worker, n = '3000000'] = process.argv.slice(2);
// fork() with execPath runs the C++ program with Node's channel, as it would a Node child.
const child = fork('', [], { execPath: worker, serialization: 'json' });
let ticks = 0;
const timer = setInterval(() => { ticks += 1; }, 10);

child.on('message', (m) => {
  clearInterval(timer);
  console.log(`below ${m.below} the longest Collatz chain starts at ${m.start} (${m.steps} steps); ` +
              `the event loop ticked ${ticks} times meanwhile`);
  if (ticks === 0) process.exitCode = 1;  // the job should take longer than one tick
  child.disconnect();
});
child.on('exit', (code) => {
  if (code !== 0) {
    console.error(`collatz_worker exited with ${code}`);
    process.exitCode = 1;
  }
});
child.send(Number(n));
