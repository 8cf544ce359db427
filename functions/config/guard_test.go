package config

import (
	"testing"
)

func TestLoadGuard(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    Guard
		wantErr bool
	}{
		{name: "defaults", env: map[string]string{}, want: Guard{ConfirmOver: 50, SeedNoExecute: true}},
		{name: "set", env: map[string]string{"NODEBATCH_CONFIRM_OVER": "7", "NODEBATCH_GUARD_SEED": "false"}, want: Guard{ConfirmOver: 7}},
		{name: "seed on", env: map[string]string{"NODEBATCH_GUARD_SEED": "1"}, want: Guard{ConfirmOver: 50, SeedNoExecute: true}},
		{name: "zero", env: map[string]string{"NODEBATCH_CONFIRM_OVER": "0"}, wantErr: true},
		{name: "not a number", env: map[string]string{"NODEBATCH_CONFIRM_OVER": "many"}, wantErr: true},
		{name: "not a bool", env: map[string]string{"NODEBATCH_GUARD_SEED": "maybe"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.env["NODEBATCH_PROJECT"] = "p"
			got, err := Load(func(k string) string { return tt.env[k] })
			if (err != nil) != tt.wantErr {
				t.Fatalf("Load = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && got.Guard != tt.want {
				t.Errorf("Load().Guard = %+v, want %+v", got.Guard, tt.want)
			}
		})
	}
}
