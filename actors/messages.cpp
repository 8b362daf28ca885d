// messages.hpp: the registration of every message type.
#include "actors/messages.hpp"

namespace baton {

std::string to_string(admit x) {
  switch (x) {
    case admit::ok:
      return "ok";
    case admit::later:
      return "later";
    case admit::never:
      return "never";
  }
  return "admit(" + std::to_string(static_cast<int>(x)) + ")";
}

std::string to_string(pipeline_state x) {
  switch (x) {
    case pipeline_state::running:
      return "running";
    case pipeline_state::stage_down:
      return "stage_down";
    case pipeline_state::stopped:
      return "stopped";
    case pipeline_state::recovering:
      return "recovering";
  }
  return "pipeline_state(" + std::to_string(static_cast<int>(x)) + ")";
}

void add_message_types(caf::actor_system_config& cfg) {
  // the outcome enums need no entry: they cross processes only as fields of gen_event,
  // admission and router_stats (written as their uint8_t), and refuse messages and the
  // client actor's handle stay within the head
  cfg.add_message_type<sampling_params>("sampling_params");
  cfg.add_message_type<output_constraint>("output_constraint");
  cfg.add_message_type<gen_request>("gen_request");
  cfg.add_message_type<gen_event>("gen_event");
  cfg.add_message_type<admission>("admission");
  cfg.add_message_type<seq_slice>("seq_slice");
  cfg.add_message_type<step_desc>("step_desc");
  cfg.add_message_type<step_result>("step_result");
  cfg.add_message_type<step_timing>("step_timing");
  cfg.add_message_type<std::vector<step_timing>>("std::vector<step_timing>");
  cfg.add_message_type<router_stats>("router_stats");
  cfg.add_message_type<std::vector<shard_actor>>("std::vector<shard_actor>");
  cfg.add_message_type<stage_setup>("stage_setup");
  cfg.add_message_type<std::vector<stage_setup>>("std::vector<stage_setup>");
  cfg.add_message_type<std::vector<int32_t>>("std::vector<int32_t>");
  cfg.add_message_type<std::vector<int64_t>>("std::vector<int64_t>");
}

}  // namespace baton
