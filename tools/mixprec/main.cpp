// mixprec: inspect, analyze, plan, measure and quantize GGUF / safetensors checkpoints (cli.hpp lists the
// commands and the exit codes; app.cpp has the command line, tool.hpp and the headers beside it the work).
#include "cli.hpp"
#include "mixprec/io/output_file.hpp"

int main(int argc, char** argv) {
  mixprec::remove_pending_outputs_on_signals();  // a killed run leaves no temporary file behind
  return mixprec_cli::run(argc, argv);
}
