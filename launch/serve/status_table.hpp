// The one table that decides what an OpenAI client sees when its request does not get
// an answer: every reason the front end refuses or ends a request for (its own checks,
// and the pipeline's refusal kinds through `reason_of`) maps here to the HTTP status,
// the OpenAI error type and code, and the /metrics label. Its own file so that the
// request parser (openai_api, which has no actor system) and the front end
// (openai_server) read the same rows; nothing else in launch/serve/ writes a status
// number. Header only: a switch the compiler checks for every enumerator.
#pragma once

#include "runtime/serving/outcome.hpp"

namespace baton::api {

/// Why a request got no answer, as the front end counts and reports it.
enum class reject_reason {
  invalid_request,     ///< a bad body or field, or the admission's refusal::invalid
  context_length,      ///< prompt + max_tokens past the context (OpenAI's own message)
  model_not_found,     ///< 'model' names another model
  unauthorized,        ///< no or a wrong API key
  queue_full,          ///< refusal::queue_full: retry later
  key_quota,           ///< refusal::key_quota: retry later
  unavailable,         ///< refusal::stage_down or shutting_down, or the server stops
  body_too_large,      ///< answered by the HTTP server before any handler (counted only)
  header_too_large,    ///< answered by the HTTP server before any handler (counted only)
  internal_error,      ///< an exception escaped a handler
  // not counted in /metrics' request_rejected_total:
  not_found,           ///< no such route
  method_not_allowed,  ///< a completion route asked with another method than POST
  stage_failed,        ///< refusal::internal (or no kind): a stage failed the request's step
  forbidden,           ///< an admin call from another host while no --admin-key is set
  conflict,            ///< an admin call while another one (a reshard) runs
};

/// One row: what the client is told.
struct reply_status {
  int status;        ///< HTTP status
  const char* type;  ///< OpenAI error.type
  const char* code;  ///< OpenAI error.code; "" writes null
  const char* label; ///< /metrics reason label
};

/// The table.
constexpr reply_status status_of(reject_reason r) {
  switch (r) {
    case reject_reason::invalid_request:
      return {400, "invalid_request_error", "", "invalid_request"};
    case reject_reason::context_length:
      return {400, "invalid_request_error", "context_length_exceeded", "context_length"};
    case reject_reason::model_not_found:
      return {404, "invalid_request_error", "model_not_found", "model_not_found"};
    case reject_reason::unauthorized:
      return {401, "invalid_request_error", "invalid_api_key", "unauthorized"};
    case reject_reason::queue_full:
      return {429, "rate_limit_exceeded", "rate_limit_exceeded", "queue_full"};
    case reject_reason::key_quota:
      return {429, "rate_limit_exceeded", "rate_limit_exceeded", "key_quota"};
    case reject_reason::unavailable:
      return {503, "server_error", "", "unavailable"};
    case reject_reason::body_too_large:
      return {413, "invalid_request_error", "request_too_large", "body_too_large"};
    case reject_reason::header_too_large:
      return {431, "invalid_request_error", "request_header_fields_too_large",
              "header_too_large"};
    case reject_reason::internal_error:
      return {500, "server_error", "internal_error", "internal_error"};
    case reject_reason::not_found:
      return {404, "invalid_request_error", "not_found", "not_found"};
    case reject_reason::method_not_allowed:
      return {405, "invalid_request_error", "method_not_allowed", "method_not_allowed"};
    case reject_reason::stage_failed:
      return {500, "server_error", "", "stage_failed"};
    case reject_reason::forbidden:
      return {403, "permission_error", "forbidden", "forbidden"};
    case reject_reason::conflict:
      return {409, "invalid_request_error", "conflict", "conflict"};
  }
  return {500, "server_error", "", "internal_error"};
}

/// The /metrics label of a reason.
constexpr const char* label(reject_reason r) { return status_of(r).label; }

/// A pipeline refusal (the admission's, or a final event's error kind) as the front
/// end reports it. `none` only comes with an error event that carries no kind: a
/// server error.
constexpr reject_reason reason_of(refusal r) {
  switch (r) {
    case refusal::queue_full:
      return reject_reason::queue_full;
    case refusal::key_quota:
      return reject_reason::key_quota;
    case refusal::stage_down:
    case refusal::shutting_down:
      return reject_reason::unavailable;
    case refusal::invalid:
      return reject_reason::invalid_request;
    case refusal::none:
    case refusal::internal:
      return reject_reason::stage_failed;
  }
  return reject_reason::stage_failed;
}

}  // namespace baton::api
