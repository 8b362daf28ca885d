// ask.hpp.
#include "actors/ask.hpp"

#include <condition_variable>
#include <memory>
#include <mutex>

namespace baton {

struct pending_ask::state {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  asked out;
};

pending_ask ask_start(caf::actor_system& sys, const caf::actor& whom, caf::message msg) {
  auto sh = std::make_shared<pending_ask::state>();
  if (!whom) {
    sh->done = true;
    sh->out = {std::nullopt, "no such actor"};
    return pending_ask{sh, caf::actor()};
  }
  auto settle = [sh](asked a) {
    {
      std::lock_guard<std::mutex> lock(sh->mu);
      if (sh->done) {
        return;
      }
      sh->done = true;
      sh->out = std::move(a);
    }
    sh->cv.notify_all();
  };
  auto helper = sys.spawn([whom, settle](caf::event_based_actor* self) -> caf::behavior {
    self->monitor(whom);
    self->set_down_handler([=](caf::scheduled_actor* me, caf::down_msg& dm) {
      settle({std::nullopt, "went down (" + me->system().render(dm.reason) + ")"});
      me->quit();
    });
    // the answer comes back as an ordinary message (the message was no request)
    self->set_default_handler(
        [=](caf::scheduled_actor* me, caf::message_view& x) -> caf::result<caf::message> {
          settle({x.move_content_to_message(), std::string()});
          me->quit();
          return caf::delegated<caf::message>();
        });
    return {[](caf::exit_msg&) {}};  // a behavior, so that the helper stays until then
  });
  // sent from here, not from the helper: questions from one thread to one actor arrive
  // in the order they were asked (the helper answers for them)
  whom->enqueue(caf::make_mailbox_element(caf::actor_cast<caf::strong_actor_ptr>(helper),
                                          caf::make_message_id(), {}, std::move(msg)),
                nullptr);
  return pending_ask{sh, helper};
}

asked ask_wait(pending_ask& q, std::chrono::milliseconds timeout,
               const std::function<std::string()>& give_up) {
  auto& sh = q.st;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock<std::mutex> lock(sh->mu);
  while (!sh->done) {
    if (std::chrono::steady_clock::now() >= deadline) {
      sh->done = true;
      sh->out = {std::nullopt, "no answer within " +
                                   std::to_string(timeout.count() / 1000) + " s"};
      break;
    }
    sh->cv.wait_for(lock, std::chrono::milliseconds(100));
    if (!sh->done && give_up) {
      lock.unlock();
      std::string why = give_up();
      lock.lock();
      if (!why.empty() && !sh->done) {
        sh->done = true;
        sh->out = {std::nullopt, std::move(why)};
      }
    }
  }
  asked out = std::move(sh->out);
  lock.unlock();
  if (q.helper) {
    caf::anon_send_exit(q.helper, caf::exit_reason::user_shutdown);
  }
  return out;
}

asked ask(caf::actor_system& sys, const caf::actor& whom, caf::message msg,
          std::chrono::milliseconds timeout, std::function<std::string()> give_up) {
  auto q = ask_start(sys, whom, std::move(msg));
  return ask_wait(q, timeout, give_up);
}

}  // namespace baton
