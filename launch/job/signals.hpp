// SIGINT and SIGTERM (Ctrl-C, or mpirun forwarding either to every rank) as a request to
// stop cleanly: blocked in every thread from the start of main, and taken by one thread
// with sigwait, which sets a flag, runs the listeners (the pipeline marks itself as
// stopping, so the ranks' going away reads as the shutdown it is) and then the handler
// the running command installed (end requests with a final event, tell the pipeline to
// shut down). With no handler installed the process exits with 128 + the signal, as it
// would by default. SIGHUP is taken by the same thread: it runs the reload handler the
// command installed (`baton serve` re-reads its topology file, as nginx reloads), or ends
// the process as it would by default when there is none.
#pragma once

#include <atomic>
#include <functional>

namespace baton::cli {

/// Blocks SIGINT/SIGTERM/SIGHUP and starts the signal thread; call first thing in main.
void start_signal_thread();
/// Replaces the handler (runs on the signal thread; may be empty to restore the default).
void on_stop_signal(std::function<void()> fn);
/// Adds `fn`, run on the signal thread at the first SIGINT or SIGTERM before the handler
/// (installed or not); returns the id remove_stop_listener takes.
int add_stop_listener(std::function<void()> fn);
/// Removes a listener; once it returns, the listener is not running and will not run.
void remove_stop_listener(int id);
/// Replaces the SIGHUP handler (runs on the signal thread: it must return quickly; empty
/// restores the default, ending the process).
void on_reload_signal(std::function<void()> fn);
/// Turns true at the first SIGINT or SIGTERM.
const std::atomic<bool>& stop_requested();

}  // namespace baton::cli
