// This process's place in an MPI job. Under mpirun (Open MPI's or a PMI launcher's
// environment), MPI is initialized with MPI_THREAD_MULTIPLE and errors return instead of
// aborting; alone, nothing of MPI is touched and the job is one rank. Collective helpers
// let every rank agree on an outcome, so an error on one rank (a missing file on one
// host) ends the job everywhere with that rank's message instead of a hang.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "runtime/system/error.hpp"

namespace baton::cli {

class mpi_session {
 public:
  /// Initializes MPI when this process was started by mpirun.
  static result<std::unique_ptr<mpi_session>> init();
  /// MPI_Finalize (after every actor system and transport is gone).
  ~mpi_session();

  bool active() const { return active_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  /// One string from every rank, in rank order (MPI_Allgatherv).
  std::vector<std::string> allgather(const std::string& mine) const;
  /// Every rank's outcome combined: ok when all are, else the first failing rank's error
  /// ("rank 1: ...").
  result<void> agree(const result<void>& mine) const;
  /// The address other ranks reach this one at: 127.0.0.1 when all ranks share a host;
  /// else $BATON_ADVERTISE_ADDRESS, else the first non-loopback IPv4 address that is up.
  const std::string& bind_host() const { return bind_host_; }
  /// Each rank's host name.
  const std::vector<std::string>& hosts() const { return hosts_; }
  /// Marks `rank` dead: MPI_Finalize would wait for it forever, so the destructor then
  /// ends the process with the status given to set_exit_status instead.
  void rank_died(int rank);
  void set_exit_status(int status) { exit_status_ = status; }
  /// Ends the process now with that status (stdio flushed), MPI left as it is.
  [[noreturn]] void exit_now() const;
  /// MPI_Finalize (unless a peer died) from whatever thread, then exit_now().
  [[noreturn]] void finalize_and_exit() const;

 private:
  mpi_session() = default;

  // -- member variables -------------------------------------------------------
  bool active_ = false;
  int rank_ = 0;
  int size_ = 1;
  std::atomic<bool> peer_died_{false};
  std::atomic<int> exit_status_{0};
  std::string bind_host_ = "127.0.0.1";
  std::vector<std::string> hosts_;
};

/// fail() for an error every rank agreed on: rank 0 prints it, all return exit_bad_input.
int fail_agreed(const mpi_session& mpi, const std::string& message);

}  // namespace baton::cli
