// The CAF 0.17 build integration (cmake/FindCAF.cmake): an actor system starts, a
// typed actor answers a request, and the system shuts down.
#include <gtest/gtest.h>

#include <caf/all.hpp>

namespace {

using add_atom = caf::atom_constant<caf::atom("add")>;
using adder = caf::typed_actor<caf::replies_to<add_atom, int32_t, int32_t>::with<int32_t>>;

adder::behavior_type adder_impl() {
  return {[](add_atom, int32_t a, int32_t b) { return a + b; }};
}

TEST(caf, typed_actor_replies) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto a = sys.spawn(adder_impl);
  caf::scoped_actor self{sys};
  int32_t got = 0;
  self->request(a, std::chrono::seconds(10), add_atom::value, 40, 2)
      .receive([&](int32_t r) { got = r; },
               [&](caf::error& e) { FAIL() << sys.render(e); });
  EXPECT_EQ(got, 42);
  self->send_exit(a, caf::exit_reason::user_shutdown);
}

}  // namespace
