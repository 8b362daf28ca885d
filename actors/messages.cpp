// messages.hpp: the registration of every message type.
#include "actors/messages.hpp"

namespace baton {

void add_message_types(caf::actor_system_config& cfg) {
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
