// messages.hpp: the registration of every message type.
#include "actors/messages.hpp"

namespace baton {

std::string to_string(refusal x) {
  switch (x) {
    case refusal::none:
      return "none";
    case refusal::queue_full:
      return "queue_full";
    case refusal::key_quota:
      return "key_quota";
    case refusal::stage_down:
      return "stage_down";
    case refusal::shutting_down:
      return "shutting_down";
    case refusal::invalid:
      return "invalid";
    case refusal::internal:
      return "internal";
  }
  return "refusal(" + std::to_string(static_cast<int>(x)) + ")";
}

void add_message_types(caf::actor_system_config& cfg) {
  // refusal needs no entry: it crosses processes only as a field of gen_event and
  // admission (written as its uint8_t), and refuse messages stay within the head
  cfg.add_message_type<sampling_params>("sampling_params");
  cfg.add_message_type<gen_request>("gen_request");
  cfg.add_message_type<gen_event>("gen_event");
  cfg.add_message_type<admission>("admission");
  cfg.add_message_type<seq_slice>("seq_slice");
  cfg.add_message_type<step_desc>("step_desc");
  cfg.add_message_type<step_result>("step_result");
  cfg.add_message_type<step_timing>("step_timing");
  cfg.add_message_type<std::vector<step_timing>>("std::vector<step_timing>");
  cfg.add_message_type<router_stats>("router_stats");
}

}  // namespace baton
