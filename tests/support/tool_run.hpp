// Running the `mixprec` command line in-process from a test (tools/mixprec/cli.hpp's run, mixprec::cli), with or
// without its output captured, and the synthetic model as a GGUF the tool made itself.
#pragma once

#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "support/files.hpp"
#include "support/tiny_llama.hpp"
#include "tools/mixprec/cli.hpp"

namespace mixprec::test {

// Runs a shell command (another program: llama.cpp's llama-quantize); its exit code, with everything it
// printed in `output`.
inline int shell(const std::string& command, std::string& output) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buf[256];
  while (std::fgets(buf, sizeof buf, pipe)) output += buf;
  const int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// `mixprec args...`: the exit code.
inline int tool(std::vector<std::string> args) {
  args.insert(args.begin(), "mixprec");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return mixprec_cli::run(static_cast<int>(argv.size()), argv.data());
}

struct tool_outcome {
  int code = -1;
  std::string out, err;  // what the run printed on stdout and stderr
};

// `mixprec args...` with stdout and stderr sent to files in `dir` (stdout.txt, stderr.txt) and read back.
inline tool_outcome tool_captured(const std::filesystem::path& dir, std::vector<std::string> args) {
  const std::filesystem::path out_path = dir / "stdout.txt", err_path = dir / "stderr.txt";
  std::fflush(stdout);
  std::fflush(stderr);
  const int saved_out = ::dup(1), saved_err = ::dup(2);
  const int fo = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const int fe = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  REQUIRE((saved_out >= 0 && saved_err >= 0 && fo >= 0 && fe >= 0));
  ::dup2(fo, 1);
  ::dup2(fe, 2);
  tool_outcome r;
  r.code = tool(std::move(args));
  std::fflush(stdout);
  std::fflush(stderr);
  ::dup2(saved_out, 1);
  ::dup2(saved_err, 2);
  for (int fd : {saved_out, saved_err, fo, fe}) ::close(fd);
  auto slurp = [](const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  r.out = slurp(out_path);
  r.err = slurp(err_path);
  return r;
}

// A JSON file; a missing or empty one fails with its path (not as JSON that ends too early).
inline nlohmann::json read_json(const std::filesystem::path& p) { return nlohmann::json::parse(read_bytes(p)); }

// A fresh folder of the test's own (by name and process) holding the synthetic model (options `o`)
// converted to GGUF by the tool as dir/a.gguf: tokenizer.ggml.model "llama", BOS 1, as llama.cpp's
// llama2.c converter writes it.
inline std::filesystem::path dir_with_model(const std::string& name, const tiny_llama_options& o = {}) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / (name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const auto in = write_tiny_llama(dir / "llama2c", o);
  REQUIRE(tool({"convert", in.model, in.tokenizer, "-o", (dir / "a.gguf").string()}) == 0);
  return dir;
}

}  // namespace mixprec::test
