// libFuzzer target for the GGUF reader: any bytes must give a file or a named error,
// never a crash, a hang or an out-of-bounds read (built with ASan). Files that parse are
// taken on through the model checks and the vocabulary reader.
#include <cstddef>
#include <cstdint>

#include "runtime/model/gguf.hpp"
#include "runtime/model/model_config.hpp"
#include "runtime/text/vocab.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto f = baton::gguf_file::parse(reinterpret_cast<const std::byte*>(data), size, "fuzz");
  if (!f) {
    return 0;
  }
  (void)baton::load_vocab(*f);
  auto m = baton::model::from_file(std::move(*f));
  (void)m;
  return 0;
}
