// libFuzzer target: the sharded-safetensors index parser never crashes; bad input is mixprec::error.
// An index it accepts holds what the header promises: tensors, each mapped to a shard name that stays
// inside the index's folder, shards that are the distinct names, numbered 1..N when all are numbered.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "mixprec/io/safetensors_index.hpp"

namespace st = mixprec::safetensors;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The shard-name parser on the raw bytes, too.
  if (const auto n = st::numbered_shard({reinterpret_cast<const char*>(data), size}))
    if (n->number < 1 || n->number > n->count) __builtin_trap();
  try {
    const st::shard_index idx = st::parse_index({reinterpret_cast<const std::byte*>(data), size}, "fuzz");
    if (idx.weight_map.empty()) __builtin_trap();
    std::set<std::string> distinct;
    for (const auto& [tensor, shard] : idx.weight_map) {
      if (shard.empty() || shard.front() == '/' || shard.find('\0') != std::string::npos) __builtin_trap();
      if (shard == ".." || shard.starts_with("../") || shard.ends_with("/..") ||
          shard.find("/../") != std::string::npos || shard.find("//") != std::string::npos)
        __builtin_trap();
      distinct.insert(shard);
    }
    const std::vector<std::string> shards = idx.shards();
    if (shards.size() != distinct.size() || !std::is_permutation(shards.begin(), shards.end(), distinct.begin()))
      __builtin_trap();
    auto numbered = [](const std::string& s) { return st::numbered_shard(s).has_value(); };
    if (std::all_of(shards.begin(), shards.end(), numbered))
      for (std::size_t i = 0; i < shards.size(); ++i) {
        const st::shard_number n = *st::numbered_shard(shards[i]);
        if (n.number != i + 1 || n.count != shards.size()) __builtin_trap();
      }
  } catch (const mixprec::error&) {
  }
  return 0;
}
