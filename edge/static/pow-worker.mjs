// The proof-of-work solver, off the page's thread (a module worker started by app.mjs):
// message {challenge, difficulty} in; {progress: tried} every 64k attempts, then {solution}.
import { solve } from './pow.mjs';

self.onmessage = (event) => {
  const { challenge, difficulty } = event.data;
  const solution = solve(challenge, difficulty, {
    progress: (tried) => self.postMessage({ progress: tried }),
  });
  self.postMessage({ solution });
};
