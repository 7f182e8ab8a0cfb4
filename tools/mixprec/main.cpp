// mixprec: inspect, analyze, plan and quantize GGUF / safetensors checkpoints (app.hpp has the
// commands and the exit codes; tool.hpp the work).
#include <csignal>

#include "app.hpp"

// SIGINT/SIGTERM/SIGHUP: remove the temporary output being written, then die of the signal as usual.
extern "C" void on_fatal_signal(int sig) {
  mixprec::remove_pending_outputs();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

int main(int argc, char** argv) {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) std::signal(sig, on_fatal_signal);
  return mixprec_cli::run(argc, argv);
}
