// SIGINT and SIGTERM (Ctrl-C, or mpirun forwarding either to every rank) as a request to
// stop cleanly: blocked in every thread from the start of main, and taken by one thread
// with sigwait, which sets a flag and runs the handler the running command installed
// (end requests with a final event, tell the pipeline to shut down). With no handler
// installed the process exits with 128 + the signal, as it would by default.
#pragma once

#include <atomic>
#include <functional>

namespace baton::cli {

/// Blocks SIGINT/SIGTERM and starts the signal thread; call first thing in main.
void start_signal_thread();
/// Replaces the handler (runs on the signal thread; may be empty to restore the default).
void on_stop_signal(std::function<void()> fn);
/// Turns true at the first SIGINT or SIGTERM.
const std::atomic<bool>& stop_requested();

}  // namespace baton::cli
