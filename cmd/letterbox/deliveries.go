package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/letterboxmail/letterbox/internal/delivery"
	"github.com/letterboxmail/letterbox/internal/storeurl"
)

func init() {
	commands["deliveries"] = command{summary: "show the delivery history of a message (deliveries --store URL ID)", run: runDeliveries}
}

func runDeliveries(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("deliveries", flag.ContinueOnError)
	storeURL := fs.String("store", envOr("LETTERBOX_STORE", "file://.letterbox"), "store `URL` (env LETTERBOX_STORE)")
	asJSON := fs.Bool("json", false, "print the records as JSON")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return &exitError{2, err}
	}
	if len(pos) != 1 {
		return &exitError{2, errors.New("usage: letterbox deliveries --store URL [--json] ID")}
	}
	st, closer, err := storeurl.Open(ctx, *storeURL)
	if err != nil {
		return err
	}
	defer closer.Close()
	recs, err := delivery.Journal{Store: st}.List(ctx, pos[0])
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(recs)
	}
	if len(recs) == 0 {
		return &exitError{1, fmt.Errorf("no delivery records for %s in %s (with the failures-only journal, a job delivered at its first attempt has no record: see the logs)", pos[0], *storeURL)}
	}
	printRecords(os.Stdout, recs)
	return nil
}

func printRecords(w io.Writer, recs []delivery.Record) {
	for _, r := range recs {
		fmt.Fprintf(w, "job %s\n  route %s, action %d (%s), status %s, %d attempt(s)\n", r.Job.ID, r.Job.Route, r.Job.Action, r.Job.Kind, r.Status, len(r.Attempts))
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  #\tat\tstatus\tlatency\toutcome\tdetail")
		for _, a := range r.Attempts {
			detail := a.Error
			if a.RetryAt != nil {
				detail += " (next try " + a.RetryAt.Format(time.RFC3339) + ")"
			}
			status := "-"
			if a.Status != 0 {
				status = fmt.Sprint(a.Status)
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%.1fms\t%s\t%s\n", a.Number, a.At.Format(time.RFC3339), status, a.LatencyMS, a.Outcome, detail)
		}
		tw.Flush()
	}
}
