// Stop strings for streamed generation: text is handed out only once it can no longer
// be the start of a stop string, and generation ends at the first full match (the stop
// string itself is not part of the reply, as in OpenAI's API and llama.cpp's server).
#pragma once

#include <string>
#include <vector>

namespace baton {

class stop_strings {
 public:
  explicit stop_strings(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  /// Adds generated text; returns what may be shown now. After a match, stopped() is
  /// true and the text before the match has been returned.
  std::string push(const std::string& text) {
    if (stopped_) {
      return {};
    }
    held_ += text;
    size_t cut = std::string::npos;
    for (const auto& s : stops_) {
      if (s.empty()) {
        continue;
      }
      const size_t at = held_.find(s);
      if (at != std::string::npos && (cut == std::string::npos || at < cut)) {
        cut = at;
      }
    }
    if (cut != std::string::npos) {
      stopped_ = true;
      std::string out = held_.substr(0, cut);
      held_.clear();
      return out;
    }
    // keep the longest suffix that is a proper prefix of some stop string
    size_t keep = 0;
    for (const auto& s : stops_) {
      for (size_t n = std::min(s.size() - (s.empty() ? 0 : 1), held_.size()); n > keep; --n) {
        if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
          keep = n;
          break;
        }
      }
    }
    std::string out = held_.substr(0, held_.size() - keep);
    held_.erase(0, held_.size() - keep);
    return out;
  }

  /// What is still held back (at the end of generation it is shown).
  std::string flush() {
    std::string out;
    out.swap(held_);
    return out;
  }

  bool stopped() const { return stopped_; }

 private:
  // -- member variables -------------------------------------------------------
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace baton
