// Outputs never harm an input and never stay half-written (io/output_file.hpp and the `mixprec` tool's
// quantize): faults of the kinds real users reported, reproduced here on files the tests build: a
// quantize given its own input as -o that emptied the input (case 01), and failures that left
// truncated files behind (cases 05, 08, 09; cases_test.cpp reproduces those failures themselves).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "tools/mixprec/tool.hpp"
#include "support/errors.hpp"
#include "support/files.hpp"

namespace {

namespace fs = std::filesystem;
namespace gguf = mixprec::gguf;

using mixprec::test::read_bytes;

// Files in dir other than the ones named.
std::vector<std::string> others(const fs::path& dir, const std::vector<std::string>& known) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (std::find(known.begin(), known.end(), n) == known.end()) out.push_back(n);
  }
  return out;
}

// Two F32 matrices; the second has a NaN in its last row when `nan` (so a quantize fails half-way).
std::string make_model(const fs::path& dir, bool nan) {
  static std::vector<std::vector<float>> storage;
  storage.assign(2, std::vector<float>(64 * 8, 0.01f));
  for (std::size_t i = 0; i < storage[0].size(); ++i) storage[0][i] = 0.001f * static_cast<float>(i % 17);
  if (nan) storage[1].back() = std::nanf("");
  std::vector<gguf::tensor_source> tensors;
  for (int k = 0; k < 2; ++k) {
    gguf::tensor_source t;
    t.name = "blk.0." + std::string(k == 0 ? "attn_q" : "ffn_down") + ".weight";
    t.type = 0;
    t.dims = {64, 8};
    t.bytes = std::as_bytes(std::span(storage[static_cast<std::size_t>(k)]));
    tensors.push_back(std::move(t));
  }
  gguf::metadata kvs;
  kvs.set("general.architecture", gguf::value(std::string("llama")));
  const std::string path = (dir / "model.gguf").string();
  gguf::write(path, kvs, tensors);
  return path;
}

using mixprec::test::error_code_of;

// A plan giving each named tensor of `path` a type (shapes from the file's header).
mixprec::plan plan_of(const std::string& path, const std::map<std::string, std::string>& types) {
  const mixprec_cli::model_file f(path);
  mixprec::plan p;
  for (const auto& t : f.tensors())
    if (const auto it = types.find(t.name); it != types.end()) {
      const mixprec::quant_spec s = mixprec::parse_spec(it->second);
      p.entries.push_back({t.name, s, t.rows, t.cols, mixprec::quantized_bytes(s, t.rows, t.cols), 0.0, 0.0, ""});
    }
  return p;
}

}  // namespace

TEST_CASE("quantize refuses an output that is its input, however named, and leaves the input intact",
          "[cli][output]") {
  const fs::path dir = fs::temp_directory_path() / ("mixprec_output_inplace_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string path = make_model(dir, false);
  const auto before = read_bytes(path);
  const mixprec::plan plan = plan_of(path, {{"blk.0.attn_q.weight", "q8_0"}});
  fs::create_symlink(path, dir / "link.gguf");
  fs::create_hard_link(path, dir / "hard.gguf");
  {
    const mixprec_cli::model_file f(path);
    for (const std::string& out : {path, (dir / "." / "model.gguf").string(), (dir / "link.gguf").string(),
                                  (dir / "hard.gguf").string()}) {
      INFO(out);
      CHECK(error_code_of([&] { (void)mixprec_cli::quantize_gguf(f, plan, out, false); }) == mixprec::errc::invalid_argument);
    }
  }
  CHECK(read_bytes(path) == before);
  CHECK(others(dir, {"model.gguf", "link.gguf", "hard.gguf"}).empty());  // no temporary file left
  // And a real output next to it works, with the input still intact.
  {
    const mixprec_cli::model_file f(path);
    (void)mixprec_cli::quantize_gguf(f, plan, (dir / "out.gguf").string(), false);
  }
  CHECK(read_bytes(path) == before);
  CHECK(gguf::file::open((dir / "out.gguf").string()).at("blk.0.attn_q.weight").type == 8);
  fs::remove_all(dir);
}

TEST_CASE("a quantize that fails half-way leaves no output, and an older output survives", "[cli][output]") {
  const fs::path dir = fs::temp_directory_path() / ("mixprec_output_failure_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string path = make_model(dir, true);
  const mixprec::plan plan = plan_of(path, {{"blk.0.attn_q.weight", "q8_0"}, {"blk.0.ffn_down.weight", "q8_0"}});
  const mixprec_cli::model_file f(path);
  const std::string out = (dir / "out.gguf").string();
  CHECK(error_code_of([&] { (void)mixprec_cli::quantize_gguf(f, plan, out, false); }) == mixprec::errc::non_finite);
  CHECK_FALSE(fs::exists(out));
  CHECK(others(dir, {"model.gguf"}).empty());
  std::ofstream(out) << "an older output";
  CHECK(error_code_of([&] { (void)mixprec_cli::quantize_gguf(f, plan, out, false); }) == mixprec::errc::non_finite);
  const auto kept = read_bytes(out);
  CHECK(std::string(kept.begin(), kept.end()) == "an older output");
  CHECK(others(dir, {"model.gguf", "out.gguf"}).empty());
  fs::remove_all(dir);
}

TEST_CASE("output_file: commit renames, anything else removes the temporary file", "[io][output]") {
  const fs::path dir = fs::temp_directory_path() / ("mixprec_output_file_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string target = (dir / "a.bin").string();
  {
    mixprec::output_file out(target);
    out.stream() << "partial";
    CHECK(fs::exists(out.temporary_path()));
    CHECK_FALSE(fs::exists(target));
  }  // no commit: as if an exception had left the scope
  CHECK(fs::is_empty(dir));
  {
    mixprec::output_file out(target);
    out.stream() << "whole";
    const std::string tmp = out.temporary_path();
    out.commit();
    CHECK_FALSE(fs::exists(tmp));
  }
  const auto bytes = read_bytes(target);
  CHECK(std::string(bytes.begin(), bytes.end()) == "whole");
  struct stat st{};
  REQUIRE(::stat(target.c_str(), &st) == 0);
  const ::mode_t mask = ::umask(0);
  ::umask(mask);
  CHECK((st.st_mode & 0777) == (0666 & ~mask));  // the mode of a plain create, not mkstemp's 0600
  {
    mixprec::output_file out((dir / "b.bin").string());
    mixprec::remove_pending_outputs();  // what the tool's SIGINT/SIGTERM handler does
    CHECK_FALSE(fs::exists(out.temporary_path()));
  }
  CHECK(error_code_of([&] { mixprec::output_file out((dir / "no" / "such" / "x.bin").string()); }) == mixprec::errc::io_error);
  CHECK(error_code_of([&] { mixprec::output_file out(dir.string()); }) == mixprec::errc::io_error);
  CHECK(error_code_of([&] { mixprec::output_file out(target, {target}); }) == mixprec::errc::invalid_argument);
  fs::remove_all(dir);
}
