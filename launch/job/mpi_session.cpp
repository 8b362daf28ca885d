// mpi_session.hpp: MPI started only under mpirun, the host-name exchange and the address other
// hosts reach this rank at, allgather over MPI_Allgatherv, agree, and an MPI_Finalize that
// gives up after 20 s when a rank may have died.
#include "launch/job/mpi_session.hpp"

#include "launch/cli/commands.hpp"
#include "runtime/transport/gathered.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <mpi.h>
#include <net/if.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstdio>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <thread>

namespace baton::cli {

namespace {

bool under_mpirun() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"}) {
    if (std::getenv(v) != nullptr) {
      return true;
    }
  }
  return false;
}

std::string first_ipv4() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) {
    return "";
  }
  std::string out;
  for (ifaddrs* i = list; i != nullptr && out.empty(); i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET ||
        (i->ifa_flags & IFF_UP) == 0 || (i->ifa_flags & IFF_LOOPBACK) != 0) {
      continue;
    }
    char text[INET_ADDRSTRLEN] = {};
    const auto* in = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
    if (inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text)) != nullptr) {
      out = text;
    }
  }
  freeifaddrs(list);
  return out;
}

}  // namespace

result<std::unique_ptr<mpi_session>> mpi_session::init() {
  std::unique_ptr<mpi_session> s(new mpi_session());
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  if (!under_mpirun()) {
    s->hosts_ = {host};
    return s;
  }
  int provided = 0;
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
    return make_error("MPI_Init_thread failed");
  }
  s->active_ = true;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &s->rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &s->size_);
  if (provided < MPI_THREAD_SERIALIZED) {
    return make_error("MPI provides thread level %d; baton needs MPI_THREAD_SERIALIZED or more",
                      provided);
  }
  std::vector<std::string> hosts;
  auto named = read_payloads(s->allgather(to_payload({{"host", std::string(host)}})),
                             "host names", [&](int32_t, const nlohmann::json& j) -> result<void> {
                               hosts.push_back(j.at("host").get<std::string>());
                               return {};
                             });
  if (!named) {
    return named.err();
  }
  s->hosts_ = std::move(hosts);
  bool one_host = true;
  for (const auto& h : s->hosts_) {
    one_host = one_host && h == s->hosts_.front();
  }
  if (!one_host) {
    const char* given = std::getenv("BATON_ADVERTISE_ADDRESS");
    s->bind_host_ = given != nullptr ? given : first_ipv4();
    if (s->bind_host_.empty()) {
      return make_error("rank %d on %s: no IPv4 address other hosts can reach (set "
                        "BATON_ADVERTISE_ADDRESS)", s->rank_, host);
    }
  }
  return s;
}

mpi_session::~mpi_session() {
  if (!active_) {
    return;
  }
  if (peer_died_) {
    // MPI_Finalize synchronizes with every rank, a dead one included, and would wait for
    // it forever: the actor systems and transports are already gone, so leave here
    exit_now();
  }
  // MPI_Finalize waits for every rank: if one died without this rank hearing of it, it
  // would wait forever. 20 s is plenty for a live job.
  std::thread([this] {
    std::this_thread::sleep_for(std::chrono::seconds(20));
    std::fprintf(stderr, "baton: rank %d: MPI_Finalize did not return within 20 s (a dead "
                         "rank?); exiting\n", rank_);
    exit_now();
  }).detach();
  MPI_Finalize();
  // an MPI job leaves its actor systems running (local_server): no static destructors
  request_quick_exit();
}

std::vector<std::string> mpi_session::allgather(const std::string& mine) const {
  if (!active_) {
    return {mine};
  }
  const int len = static_cast<int>(mine.size());
  std::vector<int> lens(static_cast<size_t>(size_));
  MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, MPI_COMM_WORLD);
  std::vector<int> offsets(static_cast<size_t>(size_));
  int total = 0;
  for (int r = 0; r < size_; ++r) {
    offsets[static_cast<size_t>(r)] = total;
    total += lens[static_cast<size_t>(r)];
  }
  std::string all(static_cast<size_t>(total), '\0');
  MPI_Allgatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), offsets.data(), MPI_CHAR,
                 MPI_COMM_WORLD);
  std::vector<std::string> out;
  for (int r = 0; r < size_; ++r) {
    out.push_back(all.substr(static_cast<size_t>(offsets[static_cast<size_t>(r)]),
                             static_cast<size_t>(lens[static_cast<size_t>(r)])));
  }
  return out;
}

result<void> mpi_session::agree(const result<void>& mine) const {
  if (!active_) {
    return mine;
  }
  nlohmann::json said = nlohmann::json::object();
  if (!mine) {
    said["error"] = mine.err().message;
  }
  std::optional<error> first;  // the first failing rank's
  auto read = read_payloads(allgather(to_payload(said)), "agreeing on an outcome",
                            [&](int32_t r, const nlohmann::json& j) -> result<void> {
                              if (first || !j.contains("error")) {
                                return {};
                              }
                              const auto message = j.at("error").get<std::string>();
                              if (!message.empty()) {
                                first = size_ > 1 ? make_error("rank %d: %s", r, message.c_str())
                                                  : make_error("%s", message.c_str());
                              }
                              return {};
                            });
  if (first) {
    return *first;
  }
  return read;
}

void mpi_session::rank_died(int /*rank*/) { peer_died_ = true; }

int fail_agreed(const mpi_session& mpi, const std::string& message) {
  return mpi.rank() == 0 ? fail(message) : exit_bad_input;
}

void mpi_session::finalize_and_exit() const {
  if (active_ && !peer_died_) {
    MPI_Finalize();
  }
  exit_now();
}

void mpi_session::exit_now() const {
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(exit_status_.load());
}

}  // namespace baton::cli
