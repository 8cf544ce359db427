// Command devtoken prints an ID token minted by the running development
// issuer (emulators/cmd/oidcdev), for curl and scripts:
//
//	TOKEN=$(go run ./emulators/cmd/devtoken -user alice)
//	TOKEN=$(go run ./emulators/cmd/devtoken -user root -admin)
//	curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/v1/batches
//
// A Cloud Scheduler-shaped token for the batch function:
//
//	go run ./emulators/cmd/devtoken -issuer http://127.0.0.1:8093/google \
//	    -user scheduler@nodebatch-dev.iam.gserviceaccount.com -email scheduler@nodebatch-dev.iam.gserviceaccount.com \
//	    -aud http://127.0.0.1:8080
//
// Only the token goes to stdout.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

func main() {
	user := flag.String("user", "", "subject (sub) of the token; required")
	email := flag.String("email", "", "email claim (default USER@example.com; \"-\" for none)")
	name := flag.String("name", "", "name claim (default USER)")
	admin := flag.Bool("admin", false, "add the admin role")
	roles := flag.String("roles", "", "comma-separated extra roles")
	aud := flag.String("aud", "nodebatch", "audience (NODEBATCH_OIDC_AUDIENCE, or the function URL for scheduler tokens)")
	issuer := flag.String("issuer", "http://127.0.0.1:8093", "development issuer URL")
	ttl := flag.Duration("ttl", time.Hour, "token lifetime (at most 24h)")
	flag.Parse()
	if *user == "" {
		fmt.Fprintln(os.Stderr, "devtoken: -user is required")
		flag.Usage()
		os.Exit(2)
	}
	form := url.Values{"sub": {*user}, "aud": {*aud}, "ttl": {ttl.String()}}
	switch *email {
	case "":
		form.Set("email", *user+"@example.com")
	case "-":
	default:
		form.Set("email", *email)
	}
	if *name == "" {
		*name = *user
	}
	form.Set("name", *name)
	r := *roles
	if *admin {
		r = strings.TrimPrefix(r+",admin", ",")
	}
	if r != "" {
		form.Set("roles", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := mint(ctx, strings.TrimSuffix(*issuer, "/")+"/token", form)
	if err != nil {
		fmt.Fprintf(os.Stderr, "devtoken: %v\n(is the development issuer running? go run ./emulators/cmd/oidcdev)\n", err)
		os.Exit(1)
	}
	fmt.Println(tok)
}

func mint(ctx context.Context, endpoint string, form url.Values) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("mint token at %s: %w", endpoint, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("mint token at %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("mint token at %s: %w", endpoint, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("mint token at %s: %s: %s", endpoint, resp.Status, strings.TrimSpace(string(body)))
	}
	var tr struct {
		IDToken string `json:"id_token"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		return "", fmt.Errorf("mint token at %s: decode: %w", endpoint, err)
	}
	if tr.IDToken == "" {
		return "", errors.New("mint token: empty id_token")
	}
	return tr.IDToken, nil
}
