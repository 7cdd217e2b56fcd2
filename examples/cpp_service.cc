// cpp_service.cc - a prediction worker embedded in a C++ program.
//
// The C handles are owned by small RAII wrappers written here (unique_ptr
// with the library's destroy functions as deleters), and a failing call
// throws an exception carrying the status and the handle's message, so no
// path leaks a handle or ignores an error.
//
//   cpp_service                            self-contained: an in-process
//                                          server and trainer over inproc://
//   cpp_service PREDICTOR_URL SERVER_URL   a predictor of a running server
//                                          (examples/ps_tcp.c), like
//                                          examples/predictor_tcp.c
//
// Either way it then scores each line of standard input (Vowpal Wabbit
// text) and prints "<probability> version <model version>"; a line that does
// not parse gets "error parse: <STATUS>: <detail>" and the service goes on.
//
// In the self-contained mode a trainer learns a made-up click stream (items
// with an even number get clicked) on one thread while four threads predict
// with the same predictor, as the requests of a real service would, and the
// real-time updates land in between.
//
// Build after `make install`:
//   c++ -std=c++17 cpp_service.cc $(pkg-config --cflags --libs onlinetrain) -pthread
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <onlinetrain.h>

namespace {

// ---- errors -----------------------------------------------------------------------

class ot_error : public std::runtime_error {
public:
    ot_error(ot_status status, const std::string &what, const char *detail)
        : std::runtime_error(what + ": " + ot_status_name(status) + ": " +
                             (detail != nullptr && *detail ? detail : ot_strerror(status))),
          status_(status) {}
    ot_status status() const { return status_; }

private:
    ot_status status_;
};

void check(ot_status st, const char *what, const char *detail = nullptr)
{
    if (st != OT_OK)
        throw ot_error(st, what, detail);
}

// ---- RAII: one unique_ptr type per handle kind -----------------------------------

template <typename T, void (*Destroy)(T *)> struct deleter {
    void operator()(T *p) const { Destroy(p); }
};
template <typename T, void (*Destroy)(T *)> using handle = std::unique_ptr<T, deleter<T, Destroy>>;

using config_ptr = handle<ot_config, ot_config_destroy>;
using example_ptr = handle<ot_example, ot_example_destroy>;
using server_ptr = handle<ot_param_server, ot_param_server_destroy>;
using trainer_ptr = handle<ot_trainer, ot_trainer_destroy>;
using predictor_ptr = handle<ot_predictor, ot_predictor_destroy>;

// Calls a create function and takes ownership of what it made.
template <typename Ptr, typename Create, typename... Args>
Ptr make(Create create, const char *what, Args... args)
{
    typename Ptr::pointer raw = nullptr;
    check(create(args..., &raw), what);
    return Ptr(raw);
}

// The options every peer agrees on (a model of another shape is refused).
config_ptr make_config()
{
    config_ptr cfg = make<config_ptr>(ot_config_create, "config");
    check(ot_config_set_i64(cfg.get(), OT_OPT_BITS, 18), "bits", ot_config_errmsg(cfg.get()));
    check(ot_config_set_str(cfg.get(), OT_OPT_DELTA_SOURCE, "state"), "delta_source",
          ot_config_errmsg(cfg.get()));
    check(ot_config_set_i64(cfg.get(), OT_OPT_SYNC_EVERY_EXAMPLES, 500), "sync_every_examples",
          ot_config_errmsg(cfg.get()));
    return cfg;
}

// ---- the prediction worker ---------------------------------------------------------

struct prediction {
    float p;
    uint64_t version;
};

class prediction_worker {
public:
    explicit prediction_worker(const ot_config *cfg)
        : pred_(make<predictor_ptr>(ot_predictor_create, "predictor", cfg)) {}

    void subscribe(const std::string &pub_url, const std::string &req_url)
    {
        check(ot_predictor_subscribe(pred_.get(), pub_url.c_str(), req_url.c_str()), "subscribe",
              ot_predictor_errmsg(pred_.get()));
    }

    // Thread-safe: the predictor serves any number of threads at once; each
    // thread parses into its own example.
    prediction predict(const ot_example *ex) const
    {
        prediction r{0.0f, ot_predictor_version(pred_.get())};
        check(ot_predictor_predict(pred_.get(), ex, &r.p), "predict");
        return r;
    }

    prediction predict_text(const std::string &line) const
    {
        thread_local example_ptr ex = make<example_ptr>(ot_example_create, "example",
                                                        static_cast<const ot_config *>(nullptr));
        check(ot_example_parse(ex.get(), "vw", line.data(), line.size()), "parse",
              ot_example_errmsg(ex.get()));
        return predict(ex.get());
    }

    uint64_t version() const { return ot_predictor_version(pred_.get()); }

    void wait_version(uint64_t v, int32_t timeout_ms) const
    {
        check(ot_predictor_wait_version(pred_.get(), v, timeout_ms), "wait_version");
    }

    double stat(const char *name) const
    {
        double v = 0;
        check(ot_predictor_stat(pred_.get(), name, &v), name);
        return v;
    }

private:
    predictor_ptr pred_;
};

// ---- the self-contained mode: a server and a trainer in this process ----------------

void click_example(ot_example *ex, int i)
{
    const int item = (i / 2) % 10;
    const std::string user = "u" + std::to_string(i % 97), name = "i" + std::to_string(item);

    ot_example_clear(ex);
    check(ot_example_add_feature(ex, "user", user.c_str(), 1.0f), "feature");
    check(ot_example_add_feature(ex, "item", name.c_str(), 1.0f), "feature");
    check(ot_example_set_label(ex, item % 2 == 0 ? 1.0f : -1.0f), "label");
}

int run_in_process(prediction_worker &worker, const ot_config *cfg, server_ptr &server,
                   trainer_ptr &trainer)
{
    const char *trainer_url = "inproc://cpp-service-trainers";
    const char *predictor_url = "inproc://cpp-service-predictors";

    server = make<server_ptr>(ot_param_server_create, "server", cfg);
    check(ot_param_server_listen(server.get(), trainer_url, predictor_url), "listen",
          ot_param_server_errmsg(server.get()));
    check(ot_param_server_start(server.get()), "start", ot_param_server_errmsg(server.get()));
    trainer = make<trainer_ptr>(ot_trainer_create, "trainer", cfg);
    check(ot_trainer_connect(trainer.get(), trainer_url), "connect",
          ot_trainer_errmsg(trainer.get()));
    worker.subscribe(predictor_url, trainer_url);
    const uint64_t first = worker.version();

    // One thread trains (a trainer is used by one thread at a time) ...
    std::atomic<bool> training{true};
    std::exception_ptr train_error;
    std::thread train([&] {
        try {
            example_ptr ex = make<example_ptr>(ot_example_create, "example",
                                              static_cast<const ot_config *>(nullptr));
            for (int i = 0; i < 20000; i++) {
                click_example(ex.get(), i);
                check(ot_trainer_learn(trainer.get(), ex.get(), nullptr), "learn",
                      ot_trainer_errmsg(trainer.get()));
            }
            check(ot_trainer_sync(trainer.get()), "sync", ot_trainer_errmsg(trainer.get()));
        } catch (...) {
            train_error = std::current_exception();
        }
        training = false;
    });

    // ... while four serve requests with the same predictor.
    std::atomic<uint64_t> served{0};
    std::vector<std::thread> pool;
    std::vector<std::exception_ptr> errors(4);
    for (int t = 0; t < 4; t++) {
        pool.emplace_back([&, t] {
            try {
                const std::string request = "|user u" + std::to_string(t) + " |item i4";
                do {
                    worker.predict_text(request);
                    served++;
                } while (training);
            } catch (...) {
                errors[t] = std::current_exception();
            }
        });
    }
    train.join();
    for (auto &th : pool)
        th.join();
    if (train_error)
        std::rethrow_exception(train_error);
    for (auto &e : errors)
        if (e)
            std::rethrow_exception(e);

    // The real-time updates carry the last sync to the predictor.
    const uint64_t master = ot_trainer_version(trainer.get());
    worker.wait_version(master, 30000);
    std::printf("served %llu predictions on 4 threads while the model went from version %llu "
                "to %llu\n",
                static_cast<unsigned long long>(served.load()),
                static_cast<unsigned long long>(first),
                static_cast<unsigned long long>(worker.version()));
    return 0;
}

} // namespace

int main(int argc, char **argv)
{
    if (argc != 1 && argc != 3) {
        std::fprintf(stderr, "usage: cpp_service [PREDICTOR_URL SERVER_URL]\n");
        return 2;
    }
    try {
        config_ptr cfg = make_config();
        // Declared before the worker so they are destroyed after it (any
        // order would do: the library allows it).
        server_ptr server;
        trainer_ptr trainer;
        prediction_worker worker(cfg.get());

        if (argc == 3)
            worker.subscribe(argv[1], argv[2]);
        else
            run_in_process(worker, cfg.get(), server, trainer);
        std::printf("ready at version %llu\n", static_cast<unsigned long long>(worker.version()));
        std::fflush(stdout);

        std::string line;
        while (std::getline(std::cin, line)) {
            try {
                const prediction r = worker.predict_text(line);
                std::printf("%.6f version %llu\n", static_cast<double>(r.p),
                            static_cast<unsigned long long>(r.version));
            } catch (const ot_error &e) {
                std::printf("error %s\n", e.what());
            }
            std::fflush(stdout);
        }
        std::printf("%.0f predictions served\n", worker.stat("predictions"));
    } catch (const std::exception &e) {
        std::fprintf(stderr, "cpp_service: %s\n", e.what());
        return 1;
    }
    return 0;
}
