// llama_cpp_tool: the llama.cpp side of the LLM quantization study, run inside llama.cpp's own prebuilt
// CPU library (llama_cpp.hpp: libllama.v0.5.0.so of the npm package @node-llama-cpp/linux-x64@3.22.1,
// from $MIXPREC_LLAMA_LIB; `bash tests/interop/run.sh DIR llama_cpp_tool ARGS` fetches it and sets it).
//
//   llama_cpp_tool quantize IN.gguf OUT.gguf TYPE [--imatrix IMATRIX] [--threads N]
//       TYPE: Q4_0, Q4_K_M, Q5_K_M, Q6_K or Q8_0 (llama-quantize's recipes); IMATRIX: llama-imatrix's
//       GGUF or legacy .dat file. Prints the tensor types written and every tensor llama.cpp gave
//       another type than the recipe's because its rows do not tile the type's block.
//   llama_cpp_tool eval REF.gguf TOKENS.txt MODEL.gguf [MODEL.gguf ...] [-o RESULTS.json] [--threads N]
//       TOKENS.txt: one stream per line, decimal token ids (each stream is one batch from position 0).
//       Per model: file bytes, mean KL(P_ref || P_model) in nats over every position, top-1 agreement
//       (%), perplexity of each stream's next tokens, and the reference's perplexity.
// --threads: llama.cpp's threads (default 2; 0 for quantize: every core).
//
// Exit codes: 0 done; 1 unexpected error; 2 bad request (arguments, an output that is an input, a
// vocabulary mismatch, a refused batch); 3 unreadable input (a file llama.cpp or mixprec cannot read,
// a library that cannot be loaded); 5 unsupported (a library of another llama.cpp release).
#include <csignal>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "llama_cpp_study.hpp"
#include "mixprec/io/output_file.hpp"
#include "mixprec/models/calibration.hpp"

namespace {

namespace lc = mixprec_apps::llama_cpp;
using mixprec::errc;

constexpr const char* usage =
    "usage: llama_cpp_tool quantize IN.gguf OUT.gguf TYPE [--imatrix IMATRIX.gguf] [--threads N]\n"
    "       llama_cpp_tool eval REF.gguf TOKENS.txt MODEL.gguf [MODEL.gguf ...] [-o RESULTS.json] [--threads N]\n"
    "TYPE: Q4_0, Q4_K_M, Q5_K_M, Q6_K, Q8_0. Needs MIXPREC_LLAMA_LIB (libllama.v0.5.0.so).\n";

int exit_code(errc c) {
  switch (c) {
    case errc::io_error:
    case errc::parse_error:
    case errc::non_finite:
    case errc::empty_input: return 3;
    case errc::unsupported: return 5;
    case errc::output_error: return 6;
    case errc::invalid_argument:
    case errc::shape_mismatch:
    case errc::not_representable:
    case errc::infeasible: return 2;
  }
  return 1;
}

// Positional arguments and the options of both commands.
struct arguments {
  std::vector<std::string> positional;
  std::string imatrix, output;
  int threads = -1;  // -1: the command's default
};

arguments parse(int argc, char** argv) {
  arguments a;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw mixprec::error(errc::invalid_argument, arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--imatrix") {
      a.imatrix = value();
    } else if (arg == "-o" || arg == "--output") {
      a.output = value();
    } else if (arg == "--threads") {
      const std::string v = value();
      std::size_t used = 0;
      try {
        a.threads = std::stoi(v, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != v.size() || a.threads < 0) throw mixprec::error(errc::invalid_argument, "--threads: expected a count, got '" + v + "'");
    } else if (arg.size() > 1 && arg[0] == '-') {
      throw mixprec::error(errc::invalid_argument, "unknown option " + arg);
    } else {
      a.positional.push_back(arg);
    }
  }
  return a;
}

int quantize_command(const arguments& a) {
  if (a.positional.size() != 3 || !a.output.empty())
    throw mixprec::error(errc::invalid_argument, "quantize takes IN.gguf OUT.gguf TYPE [--imatrix F] [--threads N]");
  const std::string& in = a.positional[0];
  const std::string& out = a.positional[1];
  const lc::ftype type = lc::parse_ftype(a.positional[2]);
  const auto r = lc::quantize_file(in, out, type, a.imatrix, a.threads < 0 ? 0 : a.threads);
  std::printf("%s: %s by llama.cpp%s, %ju bytes\n", out.c_str(), a.positional[2].c_str(),
              a.imatrix.empty() ? "" : (" with imatrix " + a.imatrix).c_str(), r.bytes);
  std::printf("tensor types:");
  for (const auto& [name, n] : r.type_counts) std::printf(" %s x%d", name.c_str(), n);
  std::printf("\n");
  if (!r.fallbacks.empty()) {
    std::printf("llama.cpp gave %zu tensor(s) another type than %s asks for (rows that do not tile its block):\n",
                r.fallbacks.size(), a.positional[2].c_str());
    for (const auto& line : r.fallbacks) std::printf("  %s\n", line.c_str());
  }
  return 0;
}

int eval_command(const arguments& a) {
  if (a.positional.size() < 3 || !a.imatrix.empty())
    throw mixprec::error(errc::invalid_argument, "eval takes REF.gguf TOKENS.txt MODEL.gguf [MODEL.gguf ...] [-o F] [--threads N]");
  const std::string& ref = a.positional[0];
  const std::vector<std::string> models(a.positional.begin() + 2, a.positional.end());
  std::vector<std::string> inputs = models;
  inputs.push_back(ref);
  inputs.push_back(a.positional[1]);
  for (const auto& m : models)  // before the reference runs, not after
    if (!std::filesystem::is_regular_file(m)) throw mixprec::error(errc::io_error, "no model file '" + m + "'");
  if (!a.output.empty()) mixprec::check_output_path(a.output, inputs);
  const auto streams = mixprec::models::read_token_streams(a.positional[1], mixprec::models::token_file_format::text,
                                                           lc::vocabulary_size(ref));
  std::size_t positions = 0;
  for (const auto& s : streams) positions += s.size();
  std::printf("reference %s, %zu streams, %zu positions\n", ref.c_str(), streams.size(), positions);
  std::printf("%-40s %12s %12s %8s %10s %10s\n", "model", "bytes", "KL (nats)", "top-1 %", "PPL", "ref PPL");
  lc::eval_options options;
  if (a.threads > 0) options.threads = a.threads;
  const auto scores = lc::score_models(ref, streams, models, options, [](const lc::model_score& s) {
    std::printf("%-40s %12ju %12.6g %8.2f %10.4f %10.4f\n", s.path.c_str(), s.bytes, s.kl, s.top1, s.ppl, s.ref_ppl);
    std::fflush(stdout);
  });
  if (!a.output.empty()) {
    mixprec::output_file out(a.output, inputs);
    out.stream() << lc::to_json(scores).dump(2) << '\n';
    out.commit();
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  mixprec::remove_pending_outputs_on_signals();
  const std::string command = argc > 1 ? argv[1] : "";
  if (command == "-h" || command == "--help") {
    std::fputs(usage, stdout);
    return 0;
  }
  try {
    if (command == "quantize") return quantize_command(parse(argc, argv));
    if (command == "eval") return eval_command(parse(argc, argv));
    std::fputs(usage, stderr);
    return 2;
  } catch (const mixprec::error& e) {
    std::fprintf(stderr, "llama_cpp_tool: %s\n", e.message().c_str());
    return exit_code(e.code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "llama_cpp_tool: unexpected error: %s\n", e.what());
    return 1;
  }
}
