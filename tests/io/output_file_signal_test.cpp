// remove_pending_outputs_on_signals: a process killed by SIGTERM or SIGINT while writing leaves neither
// its temporary file nor a target, and still dies of the signal (its parent sees the signal, not an exit).
#include <catch2/catch.hpp>

#include <csignal>
#include <filesystem>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

#include "mixprec/io/output_file.hpp"

namespace fs = std::filesystem;

TEST_CASE("the tools' signal handler removes the temporary output and dies of the signal", "[io][output]") {
  const fs::path dir = fs::temp_directory_path() / ("mixprec_signal_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
    INFO("signal " << sig);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      mixprec::remove_pending_outputs_on_signals();
      mixprec::output_file out((dir / "model.gguf").string());
      out.stream() << "half a model";
      out.stream().flush();
      std::raise(sig);
      ::_exit(0);  // not reached: the handler re-raises with the default action
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == sig);
    CHECK(fs::is_empty(dir));  // no ".model.gguf.XXXXXX" and no model.gguf
  }
  // A signal the process ignores (nohup's SIGHUP) stays ignored: the write goes on and lands.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    std::signal(SIGHUP, SIG_IGN);
    mixprec::remove_pending_outputs_on_signals();
    mixprec::output_file out((dir / "model.gguf").string());
    out.stream() << "a whole model";
    std::raise(SIGHUP);
    out.commit();
    ::_exit(fs::exists(dir / "model.gguf") ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  fs::remove_all(dir);
}
