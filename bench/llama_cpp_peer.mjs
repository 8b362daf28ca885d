// Which llama.cpp the comparison scripts measure baton against, and how to run it:
//   native  the llama.cpp c392e509 build in the shared folder (peers/llama.cpp-c392e509:
//           llama-bench, llama-batched-bench; built -march=native on a Zen 5 although
//           its README says Zen 4: its Q4_0 and Q8_0 dot products use AVX-VNNI, which a
//           Zen 4 lacks, while F16 and Q4_K_M run there), run through its `run` wrapper;
//   node    node-llama-cpp's prebuilt CPU library (bench/llama_cpp_bench.mjs and
//           bench/llama_cpp_batched.mjs), the peer before the native build existed.
// The native build is chosen when it is there and runs the model on this CPU (a short
// llama-bench on it first: an illegal instruction may lie in one type's kernels only);
// `--peer native|node` forces one. Its folder: $BATON_LLAMA_CPP_DIR (a folder with `run` and bin/), else
// peers/llama.cpp-c392e509 in the shared folder ($BATON_SHARED_DIR, else ../shared
// beside the repository).
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.join(here, "..");

// The AVX-512 subsets a Zen 4 has (/proc/cpuinfo spelling): a -march=native build there
// may use any of them, and stops with an illegal instruction on a CPU without one.
const NATIVE_CPU_FLAGS = ["avx512f", "avx512cd", "avx512dq", "avx512bw", "avx512vl",
  "avx512ifma", "avx512vbmi", "avx512_vbmi2", "avx512_vnni", "avx512_bitalg",
  "avx512_vpopcntdq", "avx512_bf16"];

/// Removes `--peer X` from args (in place); returns X, or "auto" when it is not given.
export function takePeerFlag(args) {
  const i = args.indexOf("--peer");
  if (i < 0) return "auto";
  const v = args[i + 1];
  args.splice(i, 2);
  if (v !== "native" && v !== "node") {
    console.error(`--peer must be native or node, not ${JSON.stringify(v)}`);
    process.exit(2);
  }
  return v;
}

/// The native build's folder (it may not exist).
function nativeDir() {
  if (process.env.BATON_LLAMA_CPP_DIR) return path.resolve(process.env.BATON_LLAMA_CPP_DIR);
  const shared = process.env.BATON_SHARED_DIR ?? path.join(repoRoot, "..", "shared");
  return path.resolve(shared, "peers", "llama.cpp-c392e509");
}

/// The CPU flags the native build needs that this machine lacks (all of them when
/// /proc/cpuinfo cannot be read).
function missingCpuFlags() {
  let info = "";
  try {
    info = fs.readFileSync("/proc/cpuinfo", "utf8");
  } catch {
    return NATIVE_CPU_FLAGS;
  }
  const line = info.split("\n").find((l) => l.startsWith("flags"));
  const have = new Set((line ?? "").split(":").slice(1).join(":").trim().split(/\s+/));
  return NATIVE_CPU_FLAGS.filter((f) => !have.has(f));
}

/// The commit the native build was made from: its README says "at <40 hex digits>" (its
/// binaries report build_commit "unknown"); else the folder name's llama.cpp-<hex>.
function nativeCommit(dir) {
  try {
    const m = fs.readFileSync(path.join(dir, "README.md"), "utf8").match(/\bat ([0-9a-f]{40})\b/);
    if (m) return m[1].slice(0, 8);
  } catch { /* no README: fall through */ }
  return path.basename(dir).match(/llama\.cpp-([0-9a-f]+)$/)?.[1] ?? "unknown";
}

/// Why the native build cannot run `tool` here, or null when it can.
function nativeUnusable(dir, tool) {
  if (!fs.existsSync(path.join(dir, "run"))) return `no ${path.join(dir, "run")}`;
  if (!fs.existsSync(path.join(dir, "bin", tool))) return `no ${path.join(dir, "bin", tool)}`;
  const missing = missingCpuFlags();
  if (missing.length) return `the CPU lacks ${missing.join(" ")} (it was built -march=native)`;
  return null;
}

/// Why the native build cannot run `model` on this CPU, or null when it can: a 16-token
/// prompt and 2 generated tokens through llama-bench reach the kernels the measured runs
/// use (prompt tiles and the decode dot products).
function nativeFailsOn(dir, model, threads) {
  try {
    execFileSync(path.join(dir, "run"), ["llama-bench", "-m", model, "-t", String(threads),
      "-p", "16", "-n", "2", "-r", "1", "-o", "json"], { stdio: ["ignore", "ignore", "ignore"] });
    return null;
  } catch (e) {
    if (e.signal === "SIGILL") {
      return `it stops with an illegal instruction on ${path.basename(model)} here (built -march=native on another CPU)`;
    }
    return `llama-bench failed on ${path.basename(model)} (${e.signal ?? `exit ${e.status}`})`;
  }
}

/// node-llama-cpp's version as installed (bench/setup_peer.sh), or null.
function nodePeerVersion() {
  const peer = process.env.BATON_PEER_DIR ?? path.join(process.env.HOME, ".cache/baton/peer");
  try {
    return JSON.parse(fs.readFileSync(path.join(peer, "node_modules", "node-llama-cpp",
      "package.json"), "utf8")).version;
  } catch {
    return null;
  }
}

/// The peer to measure `model` with `tool` (llama-bench or llama-batched-bench on the
/// native side): { kind: "native", dir, commit } or { kind: "node", version }. `want` is
/// takePeerFlag's answer; a forced native peer that cannot run here is an error, an
/// automatic choice falls back to node-llama-cpp and says why on stderr.
export function choosePeer(want, tool, model, threads) {
  if (want !== "node") {
    const dir = nativeDir();
    const why = nativeUnusable(dir, tool) ?? nativeFailsOn(dir, model, threads);
    if (!why) return { kind: "native", dir, commit: nativeCommit(dir) };
    if (want === "native") {
      console.error(`--peer native: cannot use the llama.cpp build at ${dir}: ${why}`);
      process.exit(2);
    }
    process.stderr.write(`peer for ${path.basename(model)}: node-llama-cpp (native llama.cpp not used: ${why})\n`);
  }
  return { kind: "node", version: nodePeerVersion() };
}

/// Runs one of the native build's tools through its `run` wrapper (which sets
/// LD_LIBRARY_PATH); returns stdout. Its log goes to stderr, kept out of ours.
function runNative(peer, tool, args) {
  return execFileSync(path.join(peer.dir, "run"), [tool, ...args],
    { maxBuffer: 1 << 24, stdio: ["ignore", "pipe", "ignore"] }).toString();
}

/// llama-bench: -p prompt tokens as one batch, then -n tokens one at a time (from an
/// empty context; baton and node-llama-cpp decode after the prompt), one measured
/// repetition after llama-bench's own warm-up run. Same fields as llama_cpp_bench.mjs.
export function nativeBench(peer, model, { threads, nPrompt, nGen }) {
  const tests = JSON.parse(runNative(peer, "llama-bench", ["-m", model, "-t", String(threads),
    "-p", String(nPrompt), "-n", String(nGen), "-r", "1", "-o", "json"]));
  const pp = tests.find((t) => t.n_prompt > 0 && t.n_gen === 0);
  const tg = tests.find((t) => t.n_prompt === 0 && t.n_gen > 0);
  if (!pp || !tg) throw new Error(`llama-bench gave no prompt or generation test: ${JSON.stringify(tests)}`);
  return { prompt_tokens_per_s: pp.avg_ts, gen_tokens_per_s: tg.avg_ts, llama_cpp: peer.commit };
}

/// llama-batched-bench with C parallel sequences of -p prompt tokens and -n tokens each,
/// mapped onto baton bench batch's fields. Per configuration it times T_PP (all C
/// prompts as one batch, split every -b tokens) and T_TG (tg steps, each decoding one
/// token of all C sequences; S_TG = C × tg / T_TG). Baton's n tokens are the prefill's
/// first token and n − 1 decode steps, so tg = n − 1:
///   decode  C × (n − 1) / T_TG = S_TG         (baton: from every first token to the end)
///   output  C × n / (T_PP + T_TG)             (baton: from submit to the end)
///   ttft    T_PP: every prompt ends in the same llama_decode call while C × p <= -b;
///           beyond that T_PP only bounds the mean from above (ttft_upper_bound).
/// A tg = 1 configuration runs first, unmeasured, as node-llama-cpp's and baton's
/// warm-up rounds do (prompt + one decode step); llama-batched-bench's own warm-up is a
/// 16-token decode. It feeds token 0 without sampling and asks the prompt batch for the
/// last row's logits alone (baton: one per sequence).
export function nativeBatched(peer, model, { streams, threads, nPrompt, nGen, maxBatch = 2048 }) {
  const c = streams;
  const tg = nGen - 1;
  const lines = runNative(peer, "llama-batched-bench", ["-m", model, "-t", String(threads),
    "-c", String(c * (nPrompt + nGen + 16)), "-b", String(maxBatch), "-ub", "512",
    "-npp", String(nPrompt), "-ntg", `1,${tg}`, "-npl", String(c), "--output-format", "jsonl"]);
  const rows = lines.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  // the last row of the measured shape (with tg = 1 the warm-up and measured rows match)
  const x = rows.filter((r) => r.pl === c && r.pp === nPrompt && r.tg === tg).at(-1);
  if (!x) throw new Error(`llama-batched-bench gave no pp ${nPrompt} tg ${tg} pl ${c} row (context too small?)`);
  return {
    version: peer.commit,
    decode_tokens_per_s: [x.speed_tg],
    output_tokens_per_s: [(c * nGen) / (x.t_pp + x.t_tg)],
    ttft_mean_s: [x.t_pp],
    ttft_upper_bound: c * nPrompt > maxBatch,
  };
}

/// One sentence naming the peer, for a table's footnote.
export function peerNote(peer, version) {
  if (peer.kind === "native") {
    return `llama.cpp ${peer.commit} native build at ${peer.dir}`;
  }
  return `node-llama-cpp ${peer.version ?? "(version unknown)"} bundling llama.cpp ${JSON.stringify(version)}`;
}
