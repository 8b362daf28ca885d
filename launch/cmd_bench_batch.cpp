// `baton bench batch`: placeholder replaced by the batched-decode benchmark.
#include "launch/commands.hpp"
namespace baton::cli {
void add_bench_batch_command(CLI::App&, int&) {}
}  // namespace baton::cli
