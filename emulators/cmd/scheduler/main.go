// Command scheduler is the local Cloud Scheduler: it reads a jobs file and
// calls each job's target on its cron schedule exactly as Cloud Scheduler
// does, with OIDC tokens minted by the development issuer.
//
//	scheduler -jobs emulators/scheduler/jobs.example.json
//	scheduler -jobs jobs.json -once spot-nightly-taint   # fire one run now and exit
//
// Settings (flags override the environment; see docs/config.md):
//
//	NODEBATCH_SCHEDULER_JOBS    jobs file (JSON array)
//	NODEBATCH_SCHEDULER_ISSUER  issuer that mints the tokens (default http://127.0.0.1:8093/google)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nodebatch/nodebatch/emulators/scheduler"

	"github.com/nodebatch/nodebatch/shared/logging"
)

const defaultIssuer = "http://127.0.0.1:8093/google"

func main() {
	logger := logging.New(os.Stderr, slog.LevelInfo)
	if err := run(logger); err != nil {
		logger.Error("scheduler stopped", "error", err)
		os.Exit(1)
	}
}

func run(logger *slog.Logger) error {
	jobsPath := flag.String("jobs", os.Getenv("NODEBATCH_SCHEDULER_JOBS"), "jobs file (JSON array of jobs)")
	issuer := flag.String("issuer", envOr("NODEBATCH_SCHEDULER_ISSUER", defaultIssuer), "development OIDC issuer that mints the service-account tokens")
	once := flag.String("once", "", "run this job once now (schedule time = now, to the second) and exit")
	flag.Parse()
	if *jobsPath == "" {
		return errors.New("no jobs file: pass -jobs or set NODEBATCH_SCHEDULER_JOBS")
	}
	f, err := os.Open(*jobsPath)
	if err != nil {
		return fmt.Errorf("open jobs file: %w", err)
	}
	jobs, err := scheduler.LoadJobs(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", *jobsPath, err)
	}
	client := &http.Client{Timeout: 10 * time.Minute}
	r := scheduler.NewRunner(client, scheduler.DevIssuerToken(client, *issuer), logger)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *once != "" {
		for _, j := range jobs {
			if j.Name == *once {
				res, err := r.RunOnce(ctx, j, time.Now().Truncate(time.Second))
				if err != nil {
					return err
				}
				fmt.Printf("%d %s\n", res.StatusCode, res.Body)
				return nil
			}
		}
		return fmt.Errorf("no job %q in %s", *once, *jobsPath)
	}
	logger.Info("scheduler running", "jobs", len(jobs), "file", *jobsPath, "issuer", *issuer)
	return r.Run(ctx, jobs)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
