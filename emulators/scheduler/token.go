package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// DevIssuerToken returns a TokenFunc that asks the development OIDC issuer
// (emulators/oidcdev, its Google stand-in locally: http://127.0.0.1:8093/google)
// for an ID token shaped like the one Google mints for a service account:
// sub and a verified email equal to the account, aud the job's audience.
// It never runs in the cloud, where Cloud Scheduler mints tokens itself.
func DevIssuerToken(client *http.Client, issuerURL string) TokenFunc {
	if client == nil {
		client = &http.Client{}
	}
	endpoint := strings.TrimSuffix(issuerURL, "/") + "/token"
	return func(ctx context.Context, serviceAccount, audience string) (string, error) {
		form := url.Values{"sub": {serviceAccount}, "email": {serviceAccount}, "aud": {audience}, "ttl": {"1h"}}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
		if err != nil {
			return "", fmt.Errorf("mint dev token: %w", err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := client.Do(req)
		if err != nil {
			return "", fmt.Errorf("mint dev token at %s: %w", endpoint, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if err != nil {
			return "", fmt.Errorf("mint dev token at %s: read: %w", endpoint, err)
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("mint dev token at %s: status %d: %s", endpoint, resp.StatusCode, strings.TrimSpace(string(body)))
		}
		var tr struct {
			IDToken string `json:"id_token"`
		}
		if err := json.Unmarshal(body, &tr); err != nil || tr.IDToken == "" {
			return "", fmt.Errorf("mint dev token at %s: no id_token in answer (%v)", endpoint, err)
		}
		return tr.IDToken, nil
	}
}
