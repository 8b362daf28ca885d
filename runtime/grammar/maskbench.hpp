// MaskBench's protocol (guidance-ai/jsonschemabench, maskbench/runner.py) on one test
// file `{"schema": ..., "tests": [{"valid", "data"}]}`: compile the schema (time to first
// mask: compile plus the first mask), then for each test serialize `data` as Python's
// json.dumps(ensure_ascii=False) does, tokenize it without BOS, and for every token
// compute the mask (time between masks) and commit the token. An instance is accepted
// when every token is in its mask and the document is whole at the end.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/grammar/json_schema.hpp"
#include "runtime/grammar/token_mask.hpp"

namespace baton {
class tokenizer;
}

namespace baton::grammar {

struct maskbench_file {
  std::string path;
  bool compiled = false;
  schema_error why;           ///< when not compiled
  int32_t n_tests = 0;
  int32_t validation_errors = 0;    ///< valid instances rejected
  int32_t invalidation_errors = 0;  ///< invalid instances accepted
  double ttfm_us = 0;               ///< compile + first mask
  std::vector<double> tbm_us;       ///< every mask computed
  std::vector<std::string> notes;   ///< which test failed how
};

/// Runs the protocol on one file; an error for a file that is not such a test file.
result<maskbench_file> run_maskbench(const std::string& path, const tokenizer& tok,
                                     std::shared_ptr<const token_trie> trie,
                                     const schema_options& opts);

/// `value` (JSON text) as Python's json.dumps(value, ensure_ascii=False) writes it:
/// ", " and ": " separators, floats in repr's shortest form ("1e-05", "100.0").
result<std::string> python_json_dumps(const std::string& value_json);

}  // namespace baton::grammar
