// Sharded safetensors: checkpoints laid out as transformers' save_pretrained(max_shard_size=...) writes
// them (shards + model.safetensors.index.json), read as one model; every way the index and the shards
// can disagree, refused by name; the index parser on adversarial text; a lone shard recognised.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>

#include "mixprec/io/safetensors_index.hpp"
#include "support/errors.hpp"

namespace st = mixprec::safetensors;
using mixprec::errc;

namespace {

// A fresh folder, removed with everything in it at the end of the test.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("mixprec_sti_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  [[nodiscard]] std::string operator/(const std::string& name) const { return (path / name).string(); }
};

struct source_tensor {
  std::string name;
  st::dtype type;
  std::vector<std::uint64_t> shape;
  mixprec::row_matrix values;  // the matrix view of `shape`; exactly representable in `type`
};

// Values exact in F32, F16 and BF16 (multiples of 1/4 below 64), different for each seed.
mixprec::row_matrix values(mixprec::index_t rows, mixprec::index_t cols, int seed) {
  mixprec::row_matrix m(rows, cols);
  for (mixprec::index_t i = 0; i < m.size(); ++i)
    m.data()[i] = 0.25f * static_cast<float>((i * 7 + seed * 13) % 97) - 12.0f;
  return m;
}

void write_shard(const std::string& path, const std::vector<source_tensor>& ts) {
  std::vector<std::vector<std::byte>> encoded;
  for (const source_tensor& t : ts) encoded.push_back(st::encode(t.values, t.type));
  std::vector<st::tensor_view> views;
  for (std::size_t i = 0; i < ts.size(); ++i) views.push_back({ts[i].name, ts[i].type, ts[i].shape, encoded[i]});
  st::write(path, views, {{"format", "pt"}});
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// An index as transformers writes it (weight_map sorted by tensor name, indent 2).
std::string index_json(const std::map<std::string, std::string>& weight_map, std::optional<std::uint64_t> total_size) {
  nlohmann::json j;
  j["metadata"] = nlohmann::json::object();
  if (total_size) j["metadata"]["total_size"] = *total_size;
  j["weight_map"] = weight_map;
  return j.dump(2);
}

const std::string shard1 = "model-00001-of-00002.safetensors";
const std::string shard2 = "model-00002-of-00002.safetensors";

// The case's layout: embedding and layer 0 in shard 1; norm and lm_head in shard 2 (so that by tensor
// name, "lm_head.weight" of shard 2 comes first).
struct checkpoint {
  std::vector<source_tensor> first = {
      {"model.embed_tokens.weight", st::dtype::bf16, {6, 4}, values(6, 4, 1)},
      {"model.layers.0.mlp.up_proj.weight", st::dtype::f16, {3, 2, 2}, values(3, 4, 2)},
  };
  std::vector<source_tensor> second = {
      {"model.norm.weight", st::dtype::f32, {4}, values(1, 4, 3)},
      {"lm_head.weight", st::dtype::f32, {6, 4}, values(6, 4, 4)},
  };
  std::map<std::string, std::string> weight_map;
  std::uint64_t data_bytes = 0;

  checkpoint() {
    for (const auto& t : first) weight_map[t.name] = shard1;
    for (const auto& t : second) weight_map[t.name] = shard2;
    for (const auto* ts : {&first, &second})
      for (const auto& t : *ts) data_bytes += static_cast<std::uint64_t>(t.values.size()) * st::element_size(t.type);
  }
  // Writes both shards and the index into `dir`; returns the index's path.
  std::string write(const temp_dir& dir) const {
    write_shard(dir / shard1, first);
    write_shard(dir / shard2, second);
    write_text(dir / "model.safetensors.index.json", index_json(weight_map, data_bytes));
    return dir / "model.safetensors.index.json";
  }
};

// `fn` throws a mixprec::error of `code` whose message holds every needle.
template <class Fn>
void refused(Fn&& fn, errc code, const std::vector<std::string>& needles) {
  const auto e = mixprec::test::error_of(fn);
  REQUIRE(e);
  CHECK(e->code() == code);
  for (const std::string& n : needles) CHECK_THAT(e->what(), Catch::Matchers::Contains(n));
}

std::span<const std::byte> bytes(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

}  // namespace

TEST_CASE("sharded safetensors: two shards and their index read as one model", "[io][safetensors_index]") {
  const temp_dir dir;
  const checkpoint c;
  const std::string index = c.write(dir);
  st::sharded_file m = st::sharded_file::open(index);

  CHECK(m.index_path() == index);
  CHECK(m.index().shards() == std::vector<std::string>{shard1, shard2});  // by number, not by first tensor name
  CHECK(m.shard_paths() == std::vector<std::string>{dir / shard1, dir / shard2});
  REQUIRE(m.shards().size() == 2);
  CHECK(m.shards()[1].path() == dir / shard2);
  CHECK(m.metadata().at("format") == "pt");
  CHECK(m.data_bytes() == c.data_bytes);
  CHECK(m.declared_total_size() == c.data_bytes);

  // Shard order, then offset order (the order each shard was written in); each tensor knows its shard.
  REQUIRE(m.tensors().size() == 4);
  const std::vector<const source_tensor*> expected = {&c.first[0], &c.first[1], &c.second[0], &c.second[1]};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const st::sharded_tensor_info& t = m.tensors()[i];
    INFO(expected[i]->name);
    CHECK(t.name == expected[i]->name);
    CHECK(t.shard == (i < 2 ? 0u : 1u));
    CHECK(t.type == expected[i]->type);
    CHECK(t.shape == expected[i]->shape);
    CHECK(m.find(t.name) == &t);
    CHECK(m.to_float(t.name) == expected[i]->values);  // exact: the values are representable in each dtype
  }
  CHECK(mixprec::row_matrix(m.as_matrix_f32("lm_head.weight")) == c.second[1].values);
  CHECK(m.find("model.layers.1.mlp.up_proj.weight") == nullptr);
  refused([&] { (void)m.at("nope"); }, errc::invalid_argument, {"'" + index + "'", "'nope'"});
  // F16 through the F32 view is refused by the shard, as by safetensors::file.
  refused([&] { (void)m.as_matrix_f32("model.layers.0.mlp.up_proj.weight"); }, errc::unsupported, {shard1});

  // Moving the model keeps the tensors' bytes valid (they point into the shards' mappings).
  const st::sharded_file moved = std::move(m);
  CHECK(moved.to_float("model.embed_tokens.weight") == c.first[0].values);
}

TEST_CASE("sharded safetensors: total_size is exposed, not checked", "[io][safetensors_index]") {
  const temp_dir dir;
  const checkpoint c;
  const std::string index = c.write(dir);
  // mlx-lm sums the shard files' sizes (headers included): a different number, the same model.
  write_text(index, index_json(c.weight_map, c.data_bytes + 999));
  const st::sharded_file a = st::sharded_file::open(index);
  CHECK(a.declared_total_size() == c.data_bytes + 999);
  CHECK(a.data_bytes() == c.data_bytes);
  // No total_size at all (exo's mflux indexes), and no "metadata".
  write_text(index, index_json(c.weight_map, std::nullopt));
  CHECK_FALSE(st::sharded_file::open(index).declared_total_size().has_value());
  write_text(index, nlohmann::json{{"weight_map", c.weight_map}}.dump());
  CHECK_FALSE(st::sharded_file::open(index).declared_total_size().has_value());
  CHECK(st::sharded_file::open(index).tensors().size() == 4);
}

TEST_CASE("sharded safetensors: a missing shard is an io_error naming the shard and the index",
          "[io][safetensors_index]") {
  const temp_dir dir;
  const std::string index = checkpoint{}.write(dir);
  REQUIRE(st::sharded_file::open(index).tensors().size() == 4);
  // vllm-project/vllm#34859: an interrupted download loaded as half a model.
  std::filesystem::remove(dir / shard2);
  refused([&] { (void)st::sharded_file::open(index); }, errc::io_error,
          {"'" + index + "'", "shard '" + shard2 + "' (listed for 2 tensors) is missing or unreadable", dir / shard2});
  // The index itself missing.
  refused([&] { (void)st::sharded_file::open(dir / "none.safetensors.index.json"); }, errc::io_error,
          {dir / "none.safetensors.index.json"});
  // A shard that is a folder.
  std::filesystem::create_directory(dir / shard2);
  refused([&] { (void)st::sharded_file::open(index); }, errc::io_error,
          {"'" + index + "'", shard2, "not a regular file"});
}

TEST_CASE("sharded safetensors: the index and the shards must agree tensor for tensor", "[io][safetensors_index]") {
  const temp_dir dir;
  const checkpoint c;
  const std::string index = c.write(dir);
  REQUIRE(st::sharded_file::open(index).tensors().size() == 4);
  auto open = [&] { (void)st::sharded_file::open(index); };
  const std::string in_index = "'" + index + "'";

  SECTION("a tensor the index maps to a shard that holds no such tensor") {
    auto wm = c.weight_map;
    wm["model.layers.0.mlp.gate_proj.weight"] = shard1;
    write_text(index, index_json(wm, c.data_bytes));
    refused(open, errc::parse_error,
            {in_index, "maps tensor 'model.layers.0.mlp.gate_proj.weight' to shard '" + shard1 +
                           "', which does not hold it"});
  }
  SECTION("a tensor the index maps to one shard, held by the other") {
    auto wm = c.weight_map;
    wm["lm_head.weight"] = shard1;
    write_text(index, index_json(wm, c.data_bytes));
    refused(open, errc::parse_error,
            {in_index, "maps tensor 'lm_head.weight' to shard '" + shard1 + "', but it is in shard '" + shard2 + "'"});
  }
  SECTION("a tensor a shard holds that the index does not list") {
    auto wm = c.weight_map;
    wm.erase("model.norm.weight");
    write_text(index, index_json(wm, c.data_bytes));
    refused(open, errc::parse_error,
            {in_index, "shard '" + shard2 + "' holds tensor 'model.norm.weight', which the index does not list"});
  }
  SECTION("the same tensor in two shards") {
    auto second = c.second;
    second.push_back(c.first[0]);
    write_shard(dir / shard2, second);
    refused(open, errc::parse_error,
            {in_index, "tensor 'model.embed_tokens.weight' is in two shards, '" + shard1 + "' and '" + shard2 + "'"});
  }
  SECTION("a shard of another checkpoint under the same name") {
    write_shard(dir / shard2, {{"decoder.layers.0.weight", st::dtype::f32, {2, 2}, values(2, 2, 9)}});
    refused(open, errc::parse_error, {in_index, shard2});
  }
  SECTION("a shard that is not a valid safetensors file names the index and the shard") {
    std::filesystem::resize_file(dir / shard2, std::filesystem::file_size(dir / shard2) - 1);
    refused(open, errc::parse_error,
            {in_index, "shard '" + shard2 + "'", "safetensors '" + (dir / shard2) + "'", "past the data buffer"});
  }
}

TEST_CASE("sharded safetensors: shards in a sub-folder are found there", "[io][safetensors_index]") {
  const temp_dir dir;
  const checkpoint c;
  std::filesystem::create_directory(dir.path / "weights");
  write_shard(dir / ("weights/" + shard1), c.first);
  write_shard(dir / ("weights/" + shard2), c.second);
  std::map<std::string, std::string> wm;
  for (const auto& [t, s] : c.weight_map) wm[t] = "weights/" + s;
  write_text(dir / "model.safetensors.index.json", index_json(wm, c.data_bytes));
  const st::sharded_file m = st::sharded_file::open(dir / "model.safetensors.index.json");
  CHECK(m.shard_paths() == std::vector<std::string>{dir / ("weights/" + shard1), dir / ("weights/" + shard2)});
  CHECK(m.to_float("model.norm.weight") == c.second[0].values);
}

TEST_CASE("safetensors parse_index refuses malformed indexes by name", "[io][safetensors_index]") {
  const std::string path = "idx.safetensors.index.json";
  auto parse = [&](const std::string& text) { return st::parse_index(bytes(text), path); };
  auto refuses = [&](const std::string& text, const std::string& needle) {
    INFO(text);
    refused([&] { (void)parse(text); }, errc::parse_error, {"'" + path + "'", needle});
  };
  const std::string w = R"("weight_map":{"a":"s.safetensors"})";

  // Accepted: the minimal index, extra keys, null metadata and total_size, a whole float total_size.
  CHECK(parse("{" + w + "}").weight_map == std::map<std::string, std::string>{{"a", "s.safetensors"}});
  CHECK(parse(R"({"metadata":{"total_size":0,"total_parameters":3,"tool":"x"},"extra":[1],)" + w + "}").total_size ==
        0u);
  CHECK_FALSE(parse(R"({"metadata":null,)" + w + "}").total_size.has_value());
  CHECK_FALSE(parse(R"({"metadata":{"total_size":null},)" + w + "}").total_size.has_value());
  CHECK(parse(R"({"metadata":{"total_size":1234.0},)" + w + "}").total_size == 1234u);
  CHECK(parse(R"({"metadata":{"total_size":18446744073709551615},)" + w + "}").total_size == 18446744073709551615u);
  CHECK(parse(R"({"weight_map":{"a":"sub/dir/s.safetensors","b":"x..y.safetensors"}})").shards() ==
        std::vector<std::string>{"sub/dir/s.safetensors", "x..y.safetensors"});

  refuses("", "not valid JSON");
  refuses("{" + w, "not valid JSON");
  refuses("{\"weight_map\":{\"a\xff\":\"s\"}}", "not valid JSON");  // not UTF-8
  refuses("[" + w + "]", "not valid JSON");
  refuses(R"([{"weight_map":{}}])", "the index is a JSON array, not an object");
  refuses(R"("weight_map")", "the index is a JSON string, not an object");
  refuses(R"({"metadata":{"total_size":1}})", "no \"weight_map\"");
  refuses(R"({"weight_map":["a","s.safetensors"]})", "\"weight_map\" is a JSON array, not an object");
  refuses(R"({"weight_map":null})", "\"weight_map\" is a JSON null, not an object");
  refuses(R"({"weight_map":{}})", "\"weight_map\" is empty");
  refuses(R"({"weight_map":{"a":1}})", "tensor 'a' is mapped to a JSON number, not a shard file name");
  refuses(R"({"weight_map":{"a":{"file":"s.safetensors"}}})", "tensor 'a' is mapped to a JSON object");
  refuses(R"({"weight_map":{"a":""}})", "tensor 'a' is mapped to '': an empty shard name");
  refuses(R"({"weight_map":{"a":"/etc/passwd"}})", "'/etc/passwd': an absolute path");
  refuses(R"({"weight_map":{"a":"../other/model.safetensors"}})", "leaves the index's folder");
  refuses(R"({"weight_map":{"a":"sub/../../x.safetensors"}})", "leaves the index's folder");
  refuses(R"({"weight_map":{"a":".."}})", "leaves the index's folder");
  refuses(R"({"weight_map":{"a":"sub/.."}})", "leaves the index's folder");
  refuses(R"({"weight_map":{"a":"./s.safetensors"}})", "a \".\" component");
  refuses(R"({"weight_map":{"a":"sub//s.safetensors"}})", "an empty component");
  refuses(R"({"weight_map":{"a":"sub/"}})", "an empty component");
  refuses(R"({"weight_map":{"a":"..\\x.safetensors"}})", "a backslash");
  refuses(R"({"weight_map":{"a":"s.safetensors\u0000.txt"}})",
          "'s.safetensors\\u0000.txt': a shard name with a NUL byte");
  refuses(R"({"weight_map":{"a\u0000b":1}})", "tensor 'a\\u0000b' is mapped to a JSON number");
  refuses(R"({"weight_map":{"a":"s.safetensors"},"metadata":[1]})", "\"metadata\" is a JSON array, not an object");
  refuses(R"({"metadata":{"total_size":-1},)" + w + "}", "total_size\" is negative");
  refuses(R"({"metadata":{"total_size":1.5},)" + w + "}", "total_size\" is not an integer");
  refuses(R"({"metadata":{"total_size":-2.0},)" + w + "}", "total_size\" is not an integer");
  refuses(R"({"metadata":{"total_size":1e30},)" + w + "}", "total_size\" is not an integer");
  refuses(R"({"metadata":{"total_size":"12"},)" + w + "}", "total_size\" is a JSON string");
  refuses(R"({"metadata":{"total_size":18446744073709551616},)" + w + "}", "total_size\"");
  // Keys twice: the tensor (which shard?), "weight_map", a metadata key; an escaped spelling is the same key.
  refuses(R"({"weight_map":{"a":"s1.safetensors","a":"s2.safetensors"}})", "tensor 'a' is mapped twice");
  refuses(R"({"weight_map":{"a":"s1.safetensors","\u0061":"s2.safetensors"}})", "tensor 'a' is mapped twice");
  refuses("{" + w + R"(,"weight_map":{"b":"s.safetensors"}})", "\"weight_map\" appears twice");
  refuses(R"({"metadata":{"total_size":1,"total_size":2},)" + w + "}",
          "\"total_size\" appears twice inside \"metadata\"");
  // What nlohmann would pass: a raw NUL (and a second document after it), a byte order mark, deep nesting.
  refuses("{" + w + "}" + std::string(1, '\0') + R"({"weight_map":{"b":"../x"}})", "raw NUL byte");
  refuses("\xEF\xBB\xBF{" + w + "}", "byte order mark");
  refuses(R"({"extra":)" + std::string(127, '[') + std::string(127, ']') + "," + w + "}", "nested deeper than 127");
  CHECK(parse(R"({"extra":)" + std::string(126, '[') + std::string(126, ']') + "," + w + "}").weight_map.size() == 1);
}

TEST_CASE("safetensors shard numbering: names and their consistency in an index", "[io][safetensors_index]") {
  using sn = std::optional<st::shard_number>;
  auto num = [](std::string_view s) -> std::pair<std::uint64_t, std::uint64_t> {
    const sn n = st::numbered_shard(s);
    return n ? std::pair{n->number, n->count} : std::pair<std::uint64_t, std::uint64_t>{0, 0};
  };
  CHECK(num("model-00001-of-00002.safetensors") == std::pair<std::uint64_t, std::uint64_t>{1, 2});
  CHECK(num("dir/model-00002-of-00002.safetensors") == std::pair<std::uint64_t, std::uint64_t>{2, 2});
  CHECK(num("diffusion_pytorch_model-3-of-10.safetensors") == std::pair<std::uint64_t, std::uint64_t>{3, 10});
  CHECK(num("-000000001-of-999999999.safetensors") == std::pair<std::uint64_t, std::uint64_t>{1, 999999999});
  for (const char* s : {"model.safetensors", "model-00000-of-00002.safetensors", "model-00003-of-00002.safetensors",
                        "model-00001-of-00002.bin", "00001-of-00002.safetensors", "model-00001of-00002.safetensors",
                        "model-1-of-1234567890.safetensors", "model--of-2.safetensors", "model-1-of-.safetensors",
                        "model-00001-of-00002.safetensors/x", ".safetensors", ""}) {
    INFO(s);
    CHECK_FALSE(st::numbered_shard(s).has_value());
  }
  CHECK(st::is_index_path("dir/model.safetensors.index.json"));
  CHECK_FALSE(st::is_index_path("pytorch_model.bin.index.json"));

  const std::string path = "n.safetensors.index.json";
  auto refuses = [&](const std::string& text, const std::string& needle) {
    INFO(text);
    refused([&] { (void)st::parse_index(bytes(text), path); }, errc::parse_error, {"'" + path + "'", needle});
  };
  // 10 sorts before 9 by name; by number it comes last.
  std::map<std::string, std::string> ten;
  for (int i = 1; i <= 10; ++i) ten["t" + std::to_string(i)] = "m-" + std::to_string(i) + "-of-10.safetensors";
  const auto shards = st::parse_index(bytes(nlohmann::json{{"weight_map", ten}}.dump()), path).shards();
  REQUIRE(shards.size() == 10);
  CHECK(shards[8] == "m-9-of-10.safetensors");
  CHECK(shards[9] == "m-10-of-10.safetensors");
  // Names that are not all numbered are not checked, and come in name order.
  const std::string mixed = R"({"weight_map":{"a":"m-00002-of-00003.safetensors","b":"extra.safetensors"}})";
  CHECK(st::parse_index(bytes(mixed), path).shards() ==
        std::vector<std::string>{"extra.safetensors", "m-00002-of-00003.safetensors"});

  refuses(R"({"weight_map":{"a":"m-00001-of-00003.safetensors","b":"m-00002-of-00003.safetensors"}})",
          "the shard names say there are 3 shards, but the index lists 2: none is number 3");
  refuses(R"({"weight_map":{"a":"m-00002-of-00002.safetensors"}})", "none is number 1");
  refuses(R"({"weight_map":{"a":"m-00001-of-00002.safetensors","b":"m-00002-of-00003.safetensors"}})",
          "shard 'm-00001-of-00002.safetensors' is numbered out of 2 but shard 'm-00002-of-00003.safetensors' "
          "out of 3");
  refuses(R"({"weight_map":{"a":"m-00001-of-00002.safetensors","b":"n-00001-of-00002.safetensors"}})",
          "shards 'm-00001-of-00002.safetensors' and 'n-00001-of-00002.safetensors' are both number 1");
}

TEST_CASE("safetensors index_beside: a lone shard says which index it belongs to", "[io][safetensors_index]") {
  const temp_dir dir;
  const std::string index = checkpoint{}.write(dir);

  SECTION("a shard with its index beside") {
    const auto p = st::index_beside(dir / shard2);
    REQUIRE(p);
    CHECK(p->index_path == index);
    CHECK(p->number == 2);
    CHECK(p->count == 2);
    CHECK(st::index_beside(dir / shard1)->number == 1);
  }
  SECTION("a numbered shard with no index: known by its name") {
    const temp_dir other;
    write_shard(other / "model-00002-of-00005.safetensors", checkpoint{}.second);
    const auto p = st::index_beside(other / "model-00002-of-00005.safetensors");
    REQUIRE(p);
    CHECK(p->index_path.empty());
    CHECK(p->number == 2);
    CHECK(p->count == 5);
    // A file that is neither listed nor numbered is no shard.
    write_shard(other / "model.safetensors", checkpoint{}.second);
    CHECK_FALSE(st::index_beside(other / "model.safetensors").has_value());
  }
  SECTION("a shard of another checkpoint beside an index that does not list it") {
    write_shard(dir / "other-00001-of-00003.safetensors", checkpoint{}.first);
    const auto p = st::index_beside(dir / "other-00001-of-00003.safetensors");
    REQUIRE(p);
    CHECK(p->index_path.empty());  // not this index's
    CHECK(p->count == 3);
    write_shard(dir / "stray.safetensors", checkpoint{}.first);
    CHECK_FALSE(st::index_beside(dir / "stray.safetensors").has_value());
  }
  SECTION("an index in the folder that cannot be parsed is passed over") {
    write_text(dir / "a.safetensors.index.json", "{\"weight_map\":");
    const auto p = st::index_beside(dir / shard1);
    REQUIRE(p);
    CHECK(p->index_path == index);  // the good one, after the damaged one
    std::filesystem::remove(index);
    const auto q = st::index_beside(dir / shard1);
    REQUIRE(q);
    CHECK(q->index_path.empty());
    CHECK(q->count == 2);
  }
  SECTION("another index name (diffusers) is found too") {
    std::filesystem::rename(index, dir / "diffusion_pytorch_model.safetensors.index.json");
    const auto p = st::index_beside(dir / shard1);
    REQUIRE(p);
    CHECK(p->index_path == dir / "diffusion_pytorch_model.safetensors.index.json");
  }
}
