// field_reader.hpp: the type and range checks, and the messages that name the field.
#include "launch/serve/field_reader.hpp"

namespace baton::api {

namespace {

using nlohmann::json;

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::binary: return "binary data";
    case json::value_t::discarded: return "invalid JSON";
    default: return "a number";
  }
}

}  // namespace

api_error invalid(const std::string& param, const std::string& message) {
  return error_for(reject_reason::invalid_request, message, param);
}

std::string shown(const json& v) {
  if (v.is_number() || v.is_boolean()) {
    return v.dump();
  }
  return type_name(v);
}

std::string excerpt(const std::string& s, size_t n) {
  const bool cut = s.size() > n;
  if (cut) {
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) {
      --n;
    }
  } else {
    n = s.size();
  }
  std::string out = "'";
  out.append(s, 0, n);
  out += cut ? "...'" : "'";
  return out;
}

void field_reader::fail(const std::string& param, const std::string& message) {
  if (!error_) {
    error_ = invalid(param, message);
  }
}

const json* field_reader::find(const char* key) const {
  if (error_) {
    return nullptr;
  }
  auto it = object_.find(key);
  if (it == object_.end() || it->is_null()) {
    return nullptr;
  }
  return &*it;
}

std::optional<int64_t> field_reader::integer(const char* key, int64_t lo, int64_t hi) {
  const json* v = find(key);
  if (!v) {
    return std::nullopt;
  }
  const std::string name = prefix_ + key;
  const std::string range = "an integer between " + std::to_string(lo) + " and " +
                            std::to_string(hi);
  if (!v->is_number_integer()) {
    fail(name, "'" + name + "' must be " + range + ", got " + shown(*v));
    return std::nullopt;
  }
  if (v->is_number_unsigned()) {
    const auto u = v->get<uint64_t>();
    if (hi < 0 || u > static_cast<uint64_t>(hi) || (lo > 0 && u < static_cast<uint64_t>(lo))) {
      fail(name, "'" + name + "' must be " + range + ", got " + std::to_string(u));
      return std::nullopt;
    }
    return static_cast<int64_t>(u);
  }
  const auto s = v->get<int64_t>();
  if (s < lo || s > hi) {
    fail(name, "'" + name + "' must be " + range + ", got " + std::to_string(s));
    return std::nullopt;
  }
  return s;
}

std::optional<double> field_reader::number(const char* key, double lo, double hi) {
  const json* v = find(key);
  if (!v) {
    return std::nullopt;
  }
  const std::string name = prefix_ + key;
  const std::string range = "a number between " + json(lo).dump() + " and " + json(hi).dump();
  if (!v->is_number()) {
    fail(name, "'" + name + "' must be " + range + ", got " + shown(*v));
    return std::nullopt;
  }
  const auto d = v->get<double>();  // any JSON number converts (uint64 and int64 alike)
  if (!(d >= lo && d <= hi)) {
    fail(name, "'" + name + "' must be " + range + ", got " + shown(*v));
    return std::nullopt;
  }
  return d;
}

std::optional<bool> field_reader::boolean(const char* key) {
  const json* v = find(key);
  if (!v) {
    return std::nullopt;
  }
  if (!v->is_boolean()) {
    const std::string name = prefix_ + key;
    fail(name, "'" + name + "' must be a boolean, got " + shown(*v));
    return std::nullopt;
  }
  return v->get<bool>();
}

std::optional<std::string> field_reader::string(const char* key) {
  const json* v = find(key);
  if (!v) {
    return std::nullopt;
  }
  if (!v->is_string()) {
    const std::string name = prefix_ + key;
    fail(name, "'" + name + "' must be a string, got " + shown(*v));
    return std::nullopt;
  }
  return v->get<std::string>();
}

}  // namespace baton::api
