// mixprec: inspect, analyze, plan and quantize GGUF / safetensors checkpoints (app.hpp has the
// commands and the exit codes; tool.hpp the work).
#include "app.hpp"

int main(int argc, char** argv) {
  mixprec::remove_pending_outputs_on_signals();  // a killed run leaves no temporary file behind
  return mixprec_cli::run(argc, argv);
}
