// The llama.cpp side of `baton bench batch`: C concurrent sequences through
// node-llama-cpp (its prebuilt CPU library), one context with `sequences: C`, each
// sequence evaluating its own -p token prompt and then generating -n tokens (greedy,
// end-of-generation tokens ignored); the C generators run under one Promise.all, so
// node-llama-cpp puts every sequence's next token into the same llama_decode batch.
// Measured as baton measures itself (see launch/cli/cmd_bench_batch.cpp):
//   ttft_i   start → sequence i's first token;   t_first = max ttft_i;
//   t_end    start → the last sequence's n-th token;
//   decode   C × (n − 1) / (t_end − t_first)      (llama-batched-bench's S_TG)
//   output   C × n / t_end                        (end to end, prefill included)
// after one unmeasured warm-up round; medians over -r runs. Prints one JSON line.
//   node bench/llama_cpp_batched.mjs MODEL [--streams 1,4,16,64] [-p 32] [-n 32] [-t 2]
//        [-r 3] [-b 2048]
// node-llama-cpp is looked up in ~/.cache/baton/peer (bench/setup_peer.sh), or
// $BATON_PEER_DIR; it is not part of the repository.
import { createRequire } from "node:module";
import path from "node:path";

const args = process.argv.slice(2);
const model = args[0];
const opt = (flag, dflt) => {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : dflt;
};
const streams = String(opt("--streams", "1,4,16,64")).split(",").map(Number);
const nPrompt = Number(opt("-p", 32));
const nGen = Number(opt("-n", 32));
const threads = Number(opt("-t", 2));
const reps = Number(opt("-r", 3));
const maxBatch = Number(opt("-b", 2048));
if (!model || streams.some((c) => !(c >= 1)) || !(nPrompt >= 1) || !(nGen >= 2) || !(reps >= 1)) {
  console.error("usage: node bench/llama_cpp_batched.mjs MODEL [--streams 1,4,16,64] [-p 32] " +
    "[-n 32 (>= 2)] [-t 2] [-r 3] [-b 2048]");
  process.exit(2);
}

const peer = process.env.BATON_PEER_DIR ?? path.join(process.env.HOME, ".cache/baton/peer");
const require = createRequire(path.join(peer, "package.json"));
const { getLlama } = await import(require.resolve("node-llama-cpp"));

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// distinct synthetic prompts for every (round, sequence), as baton's
function makePrompt(salt, nVocab) {
  let x = BigInt(salt) * 0x9e3779b97f4a7c15n + 1n;
  const mask = (1n << 64n) - 1n;
  const out = new Array(nPrompt);
  for (let i = 0; i < nPrompt; ++i) {
    x = (x ^ (x >> 33n)) & mask;
    x = (x * 0xff51afd7ed558ccdn) & mask;
    x = (x ^ (x >> 29n)) & mask;
    out[i] = Number(x % BigInt(nVocab));
  }
  return out;
}

/// One round: every sequence evaluates its prompt and generates `n` tokens, concurrently.
async function runRound(seqs, n, round, nVocab) {
  await Promise.all(seqs.map((s) => s.clearHistory()));
  const prompts = seqs.map((_, i) => makePrompt(round * 100003 + i, nVocab));
  const t0 = performance.now();
  const logs = await Promise.all(seqs.map(async (seq, i) => {
    let first = 0;
    let last = 0;
    let k = 0;
    for await (const token of seq.evaluate(prompts[i], { temperature: 0, yieldEogToken: true })) {
      void token;
      last = performance.now();
      if (k === 0) first = last;
      if (++k >= n) break;
    }
    return { first, last, k };
  }));
  for (const l of logs) {
    if (l.k !== n) throw new Error(`a sequence generated ${l.k} of ${n} tokens`);
  }
  const c = seqs.length;
  const ttft = logs.map((l) => (l.first - t0) / 1000);
  const tFirst = Math.max(...ttft);
  const tEnd = Math.max(...logs.map((l) => (l.last - t0) / 1000));
  return {
    ttft_mean_s: ttft.reduce((a, b) => a + b, 0) / c,
    t_first_s: tFirst,
    t_end_s: tEnd,
    decode_tokens_per_s: (c * (n - 1)) / (tEnd - tFirst),
    output_tokens_per_s: (c * n) / tEnd,
  };
}

const llama = await getLlama({ gpu: false, build: "never" });
const m = await llama.loadModel({ modelPath: model });
const nVocab = m.tokens?.vocabSize ?? 128256;
const batch = [];
let round = 1;
for (const c of streams) {
  // contextSize is per sequence; one batch holds every prompt (up to -b tokens)
  const ctx = await m.createContext({
    threads,
    contextSize: nPrompt + nGen + 16,
    batchSize: Math.max(c, Math.min(maxBatch, c * nPrompt)),
    sequences: c,
  });
  const seqs = Array.from({ length: c }, () => ctx.getSequence());
  await runRound(seqs, 2, round++, nVocab);  // warm-up
  const r = { streams: c, decode_tokens_per_s: [], output_tokens_per_s: [], ttft_mean_s: [],
    all_first_token_s: [], end_s: [] };
  for (let i = 0; i < reps; ++i) {
    const x = await runRound(seqs, nGen, round++, nVocab);
    r.decode_tokens_per_s.push(x.decode_tokens_per_s);
    r.output_tokens_per_s.push(x.output_tokens_per_s);
    r.ttft_mean_s.push(x.ttft_mean_s);
    r.all_first_token_s.push(x.t_first_s);
    r.end_s.push(x.t_end_s);
  }
  r.decode_tokens_per_s_median = median(r.decode_tokens_per_s);
  r.output_tokens_per_s_median = median(r.output_tokens_per_s);
  r.ttft_mean_s_median = median(r.ttft_mean_s);
  batch.push(r);
  for (const s of seqs) s.dispose();
  await ctx.dispose();
}

console.log(JSON.stringify({
  impl: "node-llama-cpp",
  llama_cpp: llama.llamaCppRelease ?? null,
  build: llama.buildType ?? null,
  threads, n_prompt: nPrompt, n_gen: nGen, reps,
  batch,
}));
await m.dispose();
await llama.dispose();
