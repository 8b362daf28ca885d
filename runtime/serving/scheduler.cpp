// scheduler.hpp. One step: first every running sequence not in flight gets its next
// tokens (one for decode, a chunk for an unfinished or recomputed prompt), then waiting
// requests join while max_num_seqs and the token budget allow (continuous batching).
// When blocks run out, the youngest running sequence not in flight is preempted: its
// blocks are freed, its tokens kept, and it is recomputed later from the front of the
// waiting queue.
#include "runtime/serving/scheduler.hpp"

#include <algorithm>

namespace baton {

scheduler::scheduler(scheduler_config cfg, std::vector<int32_t> eog_ids)
    : cfg_(cfg),
      eog_(std::move(eog_ids)),
      blocks_(cfg.n_blocks, cfg.block_size, cfg.enable_prefix_caching) {
  BATON_ASSERT(cfg_.max_num_batched_tokens >= 1 && cfg_.max_num_seqs >= 1);
  BATON_ASSERT(cfg_.micro_batches >= 1);
}

void scheduler::add(sched_request r) {
  if (trace_) {
    trace_event e;
    e.what = trace_event::kind::add;
    e.request = r;
    trace_(e);
  }
  const uint64_t id = r.id;
  BATON_ASSERT(!r.prompt.empty() && seqs_.count(id) == 0);
  // a choice waits for its parent while that one has its prompt still to compute
  seq* parent = nullptr;
  if (auto p = r.fork_of != 0 ? seqs_.find(r.fork_of) : seqs_.end();
      p != seqs_.end() && !p->second.fork_waiting && !p->second.cancelled &&
      p->second.n_generated == 0 && p->second.req.prompt == r.prompt) {
    parent = &p->second;
  }
  seq s;
  s.tokens = r.prompt;
  s.req = std::move(r);
  s.order = next_order_++;
  seq& added = seqs_.emplace(id, std::move(s)).first->second;
  if (parent) {
    added.fork_waiting = true;
    parent->forks.push_back(id);
    ++n_fork_waiting_;
  } else {
    waiting_.push_back(id);
  }
  counters_.prompt_tokens += added.req.prompt.size();
}

void scheduler::release_blocks(seq& s) {
  if (blocks_.contains(s.req.id)) {
    blocks_.free(s.req.id);  // full blocks stay cached (evictable) for later hits
  }
  // a fork's copy no step carried yet: its blocks are gone, so is the need
  for (size_t i = copy_for_.size(); i-- > 0;) {
    if (copy_for_[i] == s.req.id) {
      copy_for_.erase(copy_for_.begin() + static_cast<std::ptrdiff_t>(i));
      copy_from_.erase(copy_from_.begin() + static_cast<std::ptrdiff_t>(i));
      copy_to_.erase(copy_to_.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }
}

void scheduler::insert_running(uint64_t id) {
  // arrival order, so the oldest compute first
  running_.insert(std::upper_bound(running_.begin(), running_.end(), id,
                                   [this](uint64_t a, uint64_t b) {
                                     return seqs_.at(a).order < seqs_.at(b).order;
                                   }),
                  id);
}

void scheduler::fork_children(seq& parent) {
  const auto n_prompt = static_cast<int64_t>(parent.req.prompt.size());
  const std::vector<uint64_t> children = std::move(parent.forks);
  parent.forks.clear();
  std::vector<uint64_t> queued;  // those the pool could not take now
  for (uint64_t id : children) {
    seq& c = seqs_.at(id);
    c.fork_waiting = false;
    --n_fork_waiting_;
    // the prompt but its last token, whose logits the child computes for its own draw
    const auto f = blocks_.fork(parent.req.id, id, n_prompt - 1, n_prompt);
    if (f.status != alloc_status::ok) {
      queued.push_back(id);
      continue;
    }
    c.n_computed = static_cast<int32_t>(n_prompt - 1);
    c.admitted_once = true;
    c.cached_tokens = parent.cached_tokens;
    insert_running(id);
    if (f.copy_from >= 0) {
      copy_from_.push_back(f.copy_from);
      copy_to_.push_back(f.copy_to);
      copy_for_.push_back(id);
    }
    ++counters_.forks;
    counters_.forked_tokens += static_cast<uint64_t>(n_prompt - 1);
  }
  waiting_.insert(waiting_.begin(), queued.begin(), queued.end());
}

void scheduler::orphan_children(seq& parent) {
  for (uint64_t id : parent.forks) {
    seqs_.at(id).fork_waiting = false;
    --n_fork_waiting_;
  }
  // they run on their own, where the parent stood: ahead of later arrivals
  waiting_.insert(waiting_.begin(), parent.forks.begin(), parent.forks.end());
  parent.forks.clear();
}

void scheduler::requeue_uncopied() {
  const std::vector<uint64_t> ids = copy_for_;
  for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
    seq& c = seqs_.at(*it);
    release_blocks(c);  // drops its copy too
    c.n_computed = 0;
    running_.erase(std::remove(running_.begin(), running_.end(), *it), running_.end());
    waiting_.push_front(*it);
  }
  BATON_ASSERT(copy_for_.empty());
}

sched_counters scheduler::counters() const {
  sched_counters c = counters_;
  const auto st = blocks_.stats();
  // counters_ holds what earlier pools counted (reset_pool): the sums keep rising
  c.cached_prompt_tokens += static_cast<uint64_t>(st.n_cached_prompt_tokens);
  c.prefix_hits += static_cast<uint64_t>(st.n_block_hits);
  c.evictions += static_cast<uint64_t>(st.n_evictions);
  return c;
}

void scheduler::erase(uint64_t id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) {
    return;
  }
  seq& s = it->second;
  if (s.fork_waiting) {
    auto& siblings = seqs_.at(s.req.fork_of).forks;
    siblings.erase(std::remove(siblings.begin(), siblings.end(), id), siblings.end());
    s.fork_waiting = false;
    --n_fork_waiting_;
  }
  if (!s.forks.empty()) {
    orphan_children(s);
  }
  release_blocks(s);
  running_.erase(std::remove(running_.begin(), running_.end(), id), running_.end());
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), id), waiting_.end());
  seqs_.erase(it);
}

std::optional<sched_output> scheduler::cancel(uint64_t id) {
  if (trace_) {
    trace_event e;
    e.what = trace_event::kind::cancel;
    e.id = id;
    trace_(e);
  }
  auto it = seqs_.find(id);
  if (it == seqs_.end()) {
    return std::nullopt;
  }
  seq& s = it->second;
  if (s.in_flight) {
    s.cancelled = true;  // ends when its step returns
    return std::nullopt;
  }
  sched_output out{id, -1, finish_reason::cancelled, static_cast<int32_t>(s.req.prompt.size()),
                   s.n_generated, s.cached_tokens};
  erase(id);
  return out;
}

void scheduler::finish(uint64_t id) {
  if (trace_) {
    trace_event e;
    e.what = trace_event::kind::finish;
    e.id = id;
    trace_(e);
  }
  auto it = seqs_.find(id);
  if (it == seqs_.end()) {
    return;
  }
  if (it->second.in_flight) {
    it->second.cancelled = true;
  } else {
    erase(id);
  }
}

bool scheduler::ensure_blocks(seq& s, int64_t n_tokens) {
  return blocks_.grow(s.req.id, n_tokens);
}

bool scheduler::admit_blocks(seq& s) {
  // the whole known sequence (prompt, plus what was generated before a preemption)
  const auto alloc = blocks_.allocate_prompt(s.req.id, s.tokens);
  if (alloc.status != alloc_status::ok) {
    return false;
  }
  s.n_computed = static_cast<int32_t>(alloc.n_cached_tokens);
  if (!s.admitted_once) {
    s.cached_tokens = s.n_computed;
    s.admitted_once = true;
  }
  return true;
}

bool scheduler::preempt_youngest(uint64_t requester) {
  // the youngest running sequence that holds blocks and is not in a step — possibly
  // the requester itself, which then waits instead of taking an older one's blocks
  uint64_t victim = 0;
  uint64_t victim_order = 0;
  bool found = false;
  for (uint64_t id : running_) {
    const seq& s = seqs_.at(id);
    if (s.in_flight || (!blocks_.contains(id) && id != requester)) {
      continue;
    }
    if (!found || s.order > victim_order) {
      victim = id;
      victim_order = s.order;
      found = true;
    }
  }
  if (!found) {
    return false;
  }
  seq& v = seqs_.at(victim);
  release_blocks(v);
  counters_.recomputed_tokens += static_cast<uint64_t>(v.n_computed);
  v.n_computed = 0;  // recomputed from its tokens (prompt + generated so far)
  running_.erase(std::remove(running_.begin(), running_.end(), victim), running_.end());
  waiting_.push_front(victim);
  ++counters_.preemptions;
  return true;
}

bool scheduler::prepare_resize(int32_t n_blocks, bool recompute, std::vector<int32_t>& from,
                               std::vector<int32_t>& to) {
  if (!in_flight_.empty()) {
    return false;
  }
  if (trace_) {
    trace_event e;
    e.what = trace_event::kind::other;
    trace_(e);
  }
  requeue_uncopied();  // the new pool would not hold what they copy
  // no requester: any running sequence may go, the youngest first
  constexpr uint64_t nobody = ~uint64_t{0};
  while ((recompute || blocks_.n_used() > n_blocks) && preempt_youngest(nobody)) {
    ++counters_.resize_preemptions;
  }
  BATON_ASSERT(blocks_.n_used() <= n_blocks);  // nothing in flight: everyone could go
  resized_ = blocks_.resized(n_blocks, from, to, !recompute);
  return true;
}

void scheduler::commit_resize() {
  if (resized_) {
    blocks_ = std::move(*resized_);
    resized_.reset();
    cfg_.n_blocks = blocks_.n_blocks();
  }
}

void scheduler::drop_resize() { resized_.reset(); }

sched_slice scheduler::make_slice(seq& s, int32_t n) {
  sched_slice sl;
  sl.seq_id = s.req.id;
  sl.first_pos = s.n_computed;
  sl.tokens.assign(s.tokens.begin() + s.n_computed, s.tokens.begin() + s.n_computed + n);
  sl.block_table = blocks_.table(s.req.id);
  sl.want_token = s.n_computed + n == static_cast<int32_t>(s.tokens.size());
  sl.sampling = s.req.sampling;
  sl.draw = s.n_generated;
  const auto& p = s.req.sampling;
  if (sl.want_token && (p.repeat_penalty != 1.0f || p.presence_penalty != 0.0f ||
                        p.frequency_penalty != 0.0f)) {
    const size_t k = std::min(s.tokens.size(), static_cast<size_t>(p.penalty_last_n));
    sl.history_tail.assign(s.tokens.end() - static_cast<std::ptrdiff_t>(k), s.tokens.end());
  }
  return sl;
}

std::optional<sched_step> scheduler::next_step() {
  auto step = decide_step();
  if (trace_) {
    trace_event e;
    e.what = step ? trace_event::kind::step : trace_event::kind::no_step;
    if (step) {
      e.id = step->step_id;
      for (const auto& sl : step->slices) {
        e.seq_ids.push_back(sl.seq_id);
        e.n_tokens.push_back(static_cast<int32_t>(sl.tokens.size()));
      }
    }
    trace_(e);
  }
  return step;
}

std::optional<sched_step> scheduler::decide_step() {
  if (static_cast<int32_t>(in_flight_.size()) >= cfg_.micro_batches) {
    return std::nullopt;
  }
  sched_step step;
  int32_t budget = cfg_.max_num_batched_tokens;
  std::vector<std::pair<uint64_t, int32_t>> members;
  // With several micro-batches in flight, each takes its share of the sequences, so
  // the stages of a pipeline work on different micro-batches at once instead of one
  // step holding everything while the next finds nothing to run.
  const size_t n_active = std::min<size_t>(running_.size() + waiting_.size(),
                                           static_cast<size_t>(cfg_.max_num_seqs));
  const size_t mb = static_cast<size_t>(cfg_.micro_batches);
  const size_t seq_cap = std::max<size_t>(1, (n_active + mb - 1) / mb);

  // running sequences first, oldest first
  const std::vector<uint64_t> running = running_;
  for (uint64_t id : running) {
    if (budget == 0 || step.slices.size() >= seq_cap) {
      break;
    }
    auto it = seqs_.find(id);
    // skip what this loop already preempted (it waits now) and what is in a step
    if (it == seqs_.end() || it->second.in_flight ||
        std::find(running_.begin(), running_.end(), id) == running_.end()) {
      continue;
    }
    seq& s = it->second;
    const int32_t todo = static_cast<int32_t>(s.tokens.size()) - s.n_computed;
    if (todo <= 0) {
      continue;
    }
    const int32_t n = std::min(todo, budget);
    bool ok = ensure_blocks(s, s.n_computed + n);
    while (!ok && seqs_.count(id) && std::count(running_.begin(), running_.end(), id) &&
           preempt_youngest(id)) {
      ok = std::count(running_.begin(), running_.end(), id) && ensure_blocks(s, s.n_computed + n);
    }
    if (!ok) {
      continue;  // preempted itself, or waits for steps in flight to return blocks
    }
    step.slices.push_back(make_slice(s, n));
    s.in_flight = true;  // now: a later preemption in this step must not take it
    members.emplace_back(id, n);
    budget -= n;
  }
  // then waiting requests join, FCFS, while sequences and tokens allow
  while (!waiting_.empty() && budget > 0 && step.slices.size() < seq_cap &&
         static_cast<int32_t>(running_.size()) < cfg_.max_num_seqs) {
    const uint64_t id = waiting_.front();
    seq& s = seqs_.at(id);
    if (!admit_blocks(s)) {
      break;  // FCFS: later requests wait behind it
    }
    const int32_t todo = static_cast<int32_t>(s.tokens.size()) - s.n_computed;
    const int32_t n = std::min(todo, budget);
    waiting_.pop_front();
    insert_running(id);
    step.slices.push_back(make_slice(s, n));
    s.in_flight = true;
    members.emplace_back(id, n);
    budget -= n;
  }
  if (step.slices.empty()) {
    return std::nullopt;
  }
  step.step_id = next_step_id_++;
  // forks' copies ride in the first step after the fork: every stage copies before any
  // step that reads or writes those blocks (each stage runs its steps in order)
  step.copy_from = std::move(copy_from_);
  step.copy_to = std::move(copy_to_);
  copy_from_.clear();
  copy_to_.clear();
  copy_for_.clear();
  in_flight_.emplace(step.step_id, std::move(members));
  ++counters_.steps;
  return step;
}

std::vector<sched_output> scheduler::on_step_done(uint64_t step_id,
                                                  const std::vector<uint64_t>& seq_ids,
                                                  const std::vector<int32_t>& tokens) {
  if (trace_) {
    trace_event e;
    e.what = trace_event::kind::done;
    e.id = step_id;
    e.seq_ids = seq_ids;
    e.tokens = tokens;
    trace_(e);
  }
  std::vector<sched_output> out;
  auto it = in_flight_.find(step_id);
  BATON_ASSERT(it != in_flight_.end());
  const auto members = std::move(it->second);
  in_flight_.erase(it);
  for (const auto& [id, n] : members) {
    auto sit = seqs_.find(id);
    if (sit == seqs_.end()) {
      continue;
    }
    seq& s = sit->second;
    s.in_flight = false;
    s.n_computed += n;
    // every stage has written these positions: their full blocks may serve others now
    blocks_.commit_full_blocks(id, std::span<const int32_t>(s.tokens.data(),
                                                            static_cast<size_t>(s.n_computed)));
    const auto prompt_n = static_cast<int32_t>(s.req.prompt.size());
    if (!s.forks.empty() && s.n_computed >= prompt_n) {
      fork_children(s);  // before this one may end and free its blocks
    }
    if (s.cancelled) {
      out.push_back({id, -1, finish_reason::cancelled, prompt_n, s.n_generated, s.cached_tokens});
      erase(id);
      continue;
    }
    int32_t token = -1;
    for (size_t i = 0; i < seq_ids.size(); ++i) {
      if (seq_ids[i] == id) {
        token = tokens[i];
      }
    }
    if (token < 0) {
      continue;  // a prefill chunk that did not reach the end of the known tokens
    }
    s.tokens.push_back(token);
    ++s.n_generated;
    ++counters_.generated_tokens;
    sched_output o{id, token, finish_reason::none, prompt_n, s.n_generated, s.cached_tokens};
    const bool eog = std::find(eog_.begin(), eog_.end(), token) != eog_.end();
    if (eog && !s.req.ignore_eos) {
      o.finish = finish_reason::stop;
    } else if (s.n_generated >= s.req.max_tokens ||
               static_cast<int64_t>(s.tokens.size()) >= cfg_.n_ctx) {
      o.finish = finish_reason::length;
    }
    out.push_back(o);
    if (o.finish != finish_reason::none) {
      erase(id);
    }
  }
  return out;
}

std::vector<uint64_t> scheduler::fail_step(uint64_t step_id) {
  std::vector<uint64_t> ids;
  auto it = in_flight_.find(step_id);
  if (it == in_flight_.end()) {
    return ids;
  }
  for (const auto& [id, n] : it->second) {
    ids.push_back(id);
    if (seqs_.count(id)) {
      seqs_.at(id).in_flight = false;
    }
    erase(id);
  }
  in_flight_.erase(it);
  return ids;
}

std::vector<uint64_t> scheduler::abort_all() {
  if (trace_) {
    trace_event e;
    e.what = trace_event::kind::other;
    trace_(e);
  }
  std::vector<uint64_t> ids;
  ids.reserve(seqs_.size());
  for (auto& [id, s] : seqs_) {
    ids.push_back(id);
    release_blocks(s);
  }
  seqs_.clear();
  waiting_.clear();
  running_.clear();
  in_flight_.clear();
  n_fork_waiting_ = 0;
  BATON_ASSERT(copy_for_.empty());
  return ids;
}

std::vector<sched_output> scheduler::requeue_all(std::vector<uint64_t>& replayed) {
  if (trace_) {
    trace_event e;
    e.what = trace_event::kind::requeue;
    trace_(e);
  }
  std::vector<sched_output> ended;
  in_flight_.clear();
  std::vector<uint64_t> ids = running_;  // arrival order: the oldest first
  for (auto& [id, s] : seqs_) {
    if (s.in_flight && s.cancelled) {
      ended.push_back({id, -1, finish_reason::cancelled, static_cast<int32_t>(s.req.prompt.size()),
                       s.n_generated, s.cached_tokens});
    }
  }
  for (const auto& o : ended) {
    erase(o.id);
    ids.erase(std::remove(ids.begin(), ids.end(), o.id), ids.end());
  }
  // waiting sequences preempted earlier hold no blocks; their place in the queue stays
  for (auto& [id, s] : seqs_) {
    s.in_flight = false;
    release_blocks(s);
  }
  for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
    seq& s = seqs_.at(*it);
    counters_.recomputed_tokens += static_cast<uint64_t>(s.n_computed);
    s.n_computed = 0;
    waiting_.push_front(*it);
  }
  running_.clear();
  replayed = ids;
  return ended;
}

void scheduler::reset_pool(int32_t n_blocks) {
  if (trace_) {
    trace_event e;
    e.what = trace_event::kind::reset;
    e.id = static_cast<uint64_t>(n_blocks);
    trace_(e);
  }
  BATON_ASSERT(running_.empty() && in_flight_.empty() && n_blocks >= 1);
  resized_.reset();
  const auto st = blocks_.stats();
  counters_.cached_prompt_tokens += static_cast<uint64_t>(st.n_cached_prompt_tokens);
  counters_.prefix_hits += static_cast<uint64_t>(st.n_block_hits);
  counters_.evictions += static_cast<uint64_t>(st.n_evictions);
  blocks_ = prefix_cache(n_blocks, cfg_.block_size, cfg_.enable_prefix_caching);
  cfg_.n_blocks = n_blocks;
}

}  // namespace baton
