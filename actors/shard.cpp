// shard.hpp. The computation is the runtime's; this file only moves a step through it.
#include "actors/shard.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <span>
#include <map>

#include "runtime/compute/stage_compute.hpp"
#include "runtime/grammar/sequence_filter.hpp"
#include "runtime/text/tokenizer.hpp"
#include "runtime/text/vocab.hpp"

namespace baton {

namespace {

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// What a shard owns; built once when the actor starts.
struct shard_core {
  explicit shard_core(const shard_config& c) : cfg(c), compute(c.compute) {}

  /// Runs one step on `input` (the previous stage's activations; empty on stage 0);
  /// returns the result the last stage reports (or an error from any stage).
  std::optional<step_result> run(const step_desc& d, std::optional<activations> input) {
    const int64_t t0 = now_us();
    b.clear();
    activation_header head;
    head.epoch = cfg.epoch;
    head.step = d.step_id;
    head.stage = cfg.stage + 1;
    head.n_embd = static_cast<int32_t>(cfg.m->config().n_embd);
    for (size_t i = 0; i < d.seqs.size(); ++i) {
      const seq_slice& s = d.seqs[i];
      b.block_tables.push_back(&s.block_table);
      for (size_t j = 0; j < s.tokens.size(); ++j) {
        const bool last = j + 1 == s.tokens.size();
        b.add(static_cast<int32_t>(i), s.tokens[j], s.first_pos + static_cast<int32_t>(j),
              last && s.want_token);
      }
      head.seq_ids.push_back(s.seq_id);
      head.seq_rows.push_back(static_cast<int32_t>(s.tokens.size()));
      head.n_tokens += static_cast<int32_t>(s.tokens.size());
    }
    io.on_device.reset();  // a first stage embeds; a later one gets its input below
    // A failed step is reported to the router, and passed on as an error in its
    // activations' place: no later stage waits for them (run_ready_steps).
    auto fail = [&](std::string why) {
      record(d.step_id, t0);
      step_result bad;
      bad.step_id = d.step_id;
      bad.error = std::move(why);
      if (cfg.stage + 1 < cfg.n_stages) {
        activation_header h = head;
        h.error = bad.error;
        cfg.data->send(activations{std::move(h), {}, {}, -1});
      }
      return bad;
    };
    if (cfg.stage > 0) {
      const activation_header& h = input->header;
      if (!h.error.empty()) {
        // an earlier stage failed the step, or the transport could not bring its
        // activations (a broken device link)
        return fail("stage " + std::to_string(cfg.stage) + ": step " +
                    std::to_string(d.step_id) + ": " + h.error);
      }
      if (h.n_tokens != head.n_tokens || h.n_embd != head.n_embd || h.seq_ids != head.seq_ids ||
          h.seq_rows != head.seq_rows) {
        return fail("stage " + std::to_string(cfg.stage) + ": step " +
                    std::to_string(d.step_id) + ": activations for " +
                    std::to_string(h.n_tokens) + " tokens of " +
                    std::to_string(h.seq_ids.size()) + " sequences, expected " +
                    std::to_string(head.n_tokens) + " of " +
                    std::to_string(head.seq_ids.size()));
      }
      io.host = std::move(input->hidden);
      io.on_device = std::move(input->on_device);
      io.device = input->device;
    }
    // a device fault fails this step's sequences; the router reports it to each
    auto device_fault = [&](const error& e) {
      io = {};
      return fail("stage " + std::to_string(cfg.stage) + " (" + compute->describe() +
                  "): step " + std::to_string(d.step_id) + ": " + e.message);
    };
    if (auto ok = copy_blocks(d); !ok) {
      return device_fault(ok.err());
    }
    std::optional<step_result> res;
    if (auto ok = compute->forward(b, io, logits); !ok) {
      return device_fault(ok.err());
    }
    if (cfg.stage + 1 < cfg.n_stages) {
      cfg.data->send(activations{std::move(head), std::move(io.host), std::move(io.on_device),
                                 io.device});
      io = {};
    } else {
      res = step_result{};
      res->step_id = d.step_id;
      const auto n_vocab = static_cast<size_t>(cfg.m->config().n_vocab);
      size_t row = 0;
      for (const seq_slice& s : d.seqs) {
        if (!s.want_token) {
          continue;
        }
        auto it = samplers.find(s.seq_id);
        if (it == samplers.end()) {
          it = samplers.emplace(s.seq_id, sampler(s.sampling)).first;
        }
        std::span<const float> l(logits.data() + row * n_vocab, n_vocab);
        int32_t tok = -1;
        const auto f = filters.find(s.seq_id);
        if (f != filters.end()) {
          // biased and masked: the distribution the token is drawn from (and reported)
          if (f->second->apply(l, s.draw, filtered)) {
            l = std::span<const float>(filtered);
          } else {
            // no token keeps the reply valid (the grammar's dead end): end it
            tok = trie && !trie->eog.empty() ? trie->eog.front() : 0;
          }
        }
        if (tok < 0) {
          tok = it->second.sample(l, s.history_tail, static_cast<uint64_t>(s.draw));
        }
        if (f != filters.end()) {
          f->second->commit(s.draw, tok);
        }
        res->seq_ids.push_back(s.seq_id);
        res->tokens.push_back(tok);
        res->logits.push_back(l[static_cast<size_t>(tok)]);
        const int32_t n_top = std::max(0, s.sampling.top_logprobs);
        const token_logprobs lp = s.sampling.logprobs || n_top > 0
                                      ? sampler::logprobs(l, tok, n_top)
                                      : token_logprobs{};
        res->logprobs.push_back(lp.logprob);
        res->top_counts.push_back(n_top);
        res->top_ids.insert(res->top_ids.end(), lp.top_ids.begin(), lp.top_ids.end());
        res->top_logprobs.insert(res->top_logprobs.end(), lp.top_logprobs.begin(),
                                 lp.top_logprobs.end());
        ++row;
      }
    }
    record(d.step_id, t0);
    return res;
  }

  /// The step's block copies (forked choices' partial blocks), in this stage's layers,
  /// through the format KV moves in between stages.
  result<void> copy_blocks(const step_desc& d) {
    if (d.copy_from.size() != d.copy_to.size()) {
      return error{"block copies: " + std::to_string(d.copy_from.size()) + " sources for " +
                   std::to_string(d.copy_to.size()) + " destinations"};
    }
    if (d.copy_from.empty()) {
      return {};
    }
    for (int64_t layer = cfg.first_layer; layer < cfg.last_layer; ++layer) {
      auto rows = compute->export_kv(layer, d.copy_from);
      if (!rows) {
        return error{"copying KV blocks: " + rows.err().message};
      }
      if (auto ok = compute->import_kv(layer, d.copy_to, *rows); !ok) {
        return error{"copying KV blocks: " + ok.err().message};
      }
    }
    return {};
  }

  // -- member variables -------------------------------------------------------
  shard_config cfg;
  std::shared_ptr<stage_compute> compute;
  batch b;
  stage_activations io;
  std::vector<float> logits;
  /// Per sequence: its sampling parameters and scratch. No randomness lives here (a
  /// draw is a function of the seed and the token's index), so a sequence's tokens do not
  /// depend on which shard samples them.
  std::map<uint64_t, sampler> samplers;
  /// Per constrained sequence (last stage): its logit biases and grammar.
  std::map<uint64_t, std::unique_ptr<grammar::sequence_filter>> filters;
  std::vector<float> filtered;  // one sequence's filtered logits [n_vocab]
  /// The vocabulary as a token trie, built when the first grammar comes.
  std::shared_ptr<const grammar::token_trie> trie;
  /// Compiled grammars by schema text (and strictness): requests sharing a schema share
  /// one grammar (its lazy tables are only touched on this shard's thread).
  std::map<std::string, std::shared_ptr<grammar::json_grammar>> grammars;

  /// Takes a sequence's constraint and replays its tokens so far; an error for people.
  result<void> constrain(uint64_t seq_id, const output_constraint& c,
                         const std::vector<int32_t>& generated) {
    std::shared_ptr<grammar::json_grammar> g;
    if (!c.json_schema.empty()) {
      if (!trie) {
        auto v = load_vocab(cfg.m->file());
        if (!v) {
          return error{"the model has no vocabulary for a grammar: " + v.err().message};
        }
        auto tok = tokenizer::create(std::move(*v));
        if (!tok) {
          return tok.err();
        }
        trie = grammar::token_trie::build(*tok);
      }
      const std::string key = (c.strict ? "s" : "l") + c.json_schema;
      if (auto it = grammars.find(key); it != grammars.end()) {
        g = it->second;
      } else {
        grammar::schema_options o;
        o.strict = c.strict;
        auto compiled = grammar::compile_json_schema(c.json_schema, o);
        if (!compiled) {
          return compiled.err();
        }
        g = *compiled;
        if (grammars.size() >= 64) {
          grammars.erase(grammars.begin());
        }
        grammars.emplace(key, g);
      }
    }
    auto f = grammar::sequence_filter::create(g, trie, c.bias_ids, c.bias_values, c.max_tokens);
    if (!f) {
      return f.err();
    }
    if (auto r = (*f)->replay(generated); !r) {
      return r;
    }
    filters[seq_id] = std::move(*f);
    return {};
  }

  /// The masks of a step's constrained sequences, computed before its input arrives.
  void prepare_masks(const step_desc& d) {
    for (const seq_slice& s : d.seqs) {
      if (s.want_token) {
        if (auto f = filters.find(s.seq_id); f != filters.end()) {
          f->second->prepare(s.draw);
        }
      }
    }
  }
  /// Keeps the last 4096 to 8192 steps' timings (a server runs for days): step `id`,
  /// begun at `t0` and ending now, with the shape of the batch `b` it ran.
  void record(uint64_t id, int64_t t0) {
    step_timing t{id, cfg.stage, t0, now_us(), static_cast<int32_t>(b.n_tokens()), 0,
                  static_cast<int32_t>(b.n_logits())};
    for (int64_t i = 0; i < b.n_tokens(); ++i) {
      t.positions += b.pos[static_cast<size_t>(i)] + 1;
    }
    if (timings.size() >= 8192) {
      timings.erase(timings.begin(), timings.begin() + 4096);
    }
    timings.push_back(t);
  }

  std::vector<step_timing> timings;
};

/// A step whose input has not arrived yet, and whom to answer.
struct waiting_step {
  step_desc desc;
  router_actor reply_to;
};

struct shard_state {
  std::unique_ptr<shard_core> core;
  std::map<uint64_t, waiting_step> waiting;
};

using shard_ptr = shard_actor::stateful_pointer<shard_state>;

void run_step(shard_ptr self, const step_desc& d, std::optional<activations> input,
              const router_actor& reply_to) {
  auto res = self->state.core->run(d, std::move(input));
  if (res) {
    // the last stage (or a failing one) answers the router
    res->epoch = self->state.core->cfg.epoch;
    self->send(reply_to, result_atom::value, std::move(*res));
  }
}

/// Runs the waiting steps whose input is here, in step order. Steps in flight together
/// have no sequence in common, so they may run in the order their inputs come — except
/// after a step that copies KV blocks (a forked choice's), which every later step waits
/// for: one of them may read the copies (the router sends steps in order, so the copying
/// step is known here before any step that could read them).
void run_ready_steps(shard_ptr self) {
  auto& st = self->state;
  const shard_config& cfg = st.core->cfg;
  for (auto it = st.waiting.begin(); it != st.waiting.end();) {
    auto in = cfg.data->take(cfg.epoch, it->first, cfg.stage);
    if (!in) {
      if (!it->second.desc.copy_from.empty()) {
        return;
      }
      ++it;
      continue;
    }
    waiting_step w = std::move(it->second);
    it = st.waiting.erase(it);
    run_step(self, w.desc, std::move(in), w.reply_to);
  }
}

shard_actor::behavior_type shard_impl(shard_ptr self, shard_config cfg) {
  self->state.core = std::make_unique<shard_core>(cfg);
  if (cfg.stage > 0) {
    // the transport's thread announces arrivals; the step runs on the shard's own thread
    caf::actor_addr me = self->address();
    cfg.data->on_arrival(cfg.epoch, cfg.stage, [me](uint64_t step) {
      if (auto a = caf::actor_cast<shard_actor>(me)) {
        caf::anon_send(a, input_atom::value, step);
      }
    });
  }
  return {
      [=](step_atom, step_desc& d) {
        auto& st = self->state;
        // steps come from the router (its proxy, on other ranks)
        const auto reply_to = caf::actor_cast<router_actor>(self->current_sender());
        if (cfg.stage + 1 == cfg.n_stages) {
          st.core->prepare_masks(d);  // while the activations are on their way
        }
        if (cfg.stage == 0) {
          run_step(self, d, std::nullopt, reply_to);
          return;
        }
        const uint64_t id = d.step_id;
        st.waiting.emplace(id, waiting_step{std::move(d), reply_to});
        run_ready_steps(self);
        if (st.waiting.contains(id)) {
          cfg.data->expect(cfg.stage);
          run_ready_steps(self);  // it may have come in between
          if (!st.waiting.contains(id)) {
            cfg.data->expect_done(cfg.stage);
          }
        }
      },
      [=](input_atom, uint64_t) { run_ready_steps(self); },
      [=](release_atom, uint64_t seq_id) {
        self->state.core->samplers.erase(seq_id);
        self->state.core->filters.erase(seq_id);
      },
      [=](constrain_atom, uint64_t seq_id, const output_constraint& c,
          const std::vector<int32_t>& generated) {
        if (auto r = self->state.core->constrain(seq_id, c, generated); !r) {
          // the front end compiled the same schema: this is not the client's doing
          std::fprintf(stderr, "baton: stage %d: request %llu: its constraint: %s\n", cfg.stage,
                       static_cast<unsigned long long>(seq_id), r.err().message.c_str());
        }
      },
      [=](shutdown_atom, bool peer_died) {
        if (cfg.on_shutdown) {
          cfg.on_shutdown(peer_died);
        }
        self->quit();
        return true;
      },
      [=](stats_atom) { return self->state.core->timings; },
      [=](stats_atom, int32_t n) {
        const auto& t = self->state.core->timings;
        const size_t k = std::min(t.size(), static_cast<size_t>(std::max(0, n)));
        return std::vector<step_timing>(t.end() - static_cast<std::ptrdiff_t>(k), t.end());
      },
  };
}

}  // namespace

shard_actor spawn_shard(caf::actor_system& sys, shard_config cfg) {
  return sys.spawn<caf::detached>(shard_impl, std::move(cfg));
}

}  // namespace baton
