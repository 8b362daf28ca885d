// Times llama.cpp on a GGUF file through node-llama-cpp (its prebuilt CPU library, no
// compiler needed), measured as `baton bench model` measures baton: -p prompt tokens
// evaluated as one batch, then -n tokens decoded one at a time. Prints one JSON line.
//   node bench/llama_cpp_bench.mjs MODEL [-p 128] [-n 32] [-t 2]
// node-llama-cpp is looked up from NODE_PATH (bench/setup_peer.sh installs it
// into ~/.cache/baton/peer); it is not part of the repository.
import { createRequire } from "node:module";
import path from "node:path";

const args = process.argv.slice(2);
const model = args[0];
const opt = (flag, dflt) => {
  const i = args.indexOf(flag);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const nPrompt = opt("-p", 128);
const nGen = opt("-n", 32);
const threads = opt("-t", 2);

const peer = process.env.BATON_PEER_DIR ?? path.join(process.env.HOME, ".cache/baton/peer");
const require = createRequire(path.join(peer, "package.json"));
const { getLlama } = await import(require.resolve("node-llama-cpp"));

const llama = await getLlama({ gpu: false, build: "never" });
const m = await llama.loadModel({ modelPath: model });
const ctx = await m.createContext({
  threads, contextSize: nPrompt + nGen + 16, batchSize: nPrompt, sequences: 1,
});
const seq = ctx.getSequence();
const vocab = 128256;
const prompt = Array.from({ length: nPrompt }, (_, i) => (i * 7919 + 13) % vocab);

// one warm-up round (first-use allocation), then the measured one
let ppSeconds = 0;
let tgSeconds = 0;
for (let round = 0; round < 2; ++round) {
  await seq.clearHistory();
  let t0 = performance.now();
  await seq.evaluateWithoutGeneratingNewTokens(prompt);
  ppSeconds = (performance.now() - t0) / 1000;
  let n = 0;
  t0 = performance.now();
  for await (const token of seq.evaluate([1], { temperature: 0 })) {
    if (++n >= nGen) break;
  }
  tgSeconds = (performance.now() - t0) / 1000;
}

console.log(JSON.stringify({
  impl: "node-llama-cpp",
  llama_cpp: llama.llamaCppRelease ?? null,
  build: llama.buildType ?? null,
  cpu_variant: llama.gpu === false ? "cpu" : llama.gpu,
  threads, n_prompt: nPrompt, n_gen: nGen,
  prompt_tokens_per_s: nPrompt / ppSeconds,
  gen_tokens_per_s: nGen / tgSeconds,
}));
await ctx.dispose();
await m.dispose();
await llama.dispose();
