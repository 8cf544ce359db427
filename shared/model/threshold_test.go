package model

import (
	"encoding/json"
	"testing"
)

func TestThresholdLimit(t *testing.T) {
	tests := []struct {
		in      Threshold
		total   int
		want    int
		wantErr bool
	}{
		{"", 100, 0, false},
		{" ", 100, 0, false},
		{"10", 100, 10, false},
		{"5%", 200, 10, false},
		{"5%", 10, 1, false},
		{"0.5%", 1000, 5, false},
		{"100%", 7, 7, false},
		{"100.0%", 7, 7, false},
		{"0", 10, 0, true},
		{"-3", 10, 0, true},
		{"+3", 10, 0, true},
		{"0%", 10, 0, true},
		{"x%", 10, 0, true},
		{"%", 10, 0, true},
		{"150%", 10, 0, true},
		{"100.0001%", 10, 0, true},
		// Everything strconv.ParseFloat reads that is not a finite decimal.
		{"NaN%", 10, 0, true},
		{"nan%", 10, 0, true},
		{"Inf%", 10, 0, true},
		{"+Inf%", 10, 0, true},
		{"-Inf%", 10, 0, true},
		{"infinity%", 10, 0, true},
		{"1e400%", 10, 0, true},
		{"1e1%", 10, 0, true},
		{"-0%", 10, 0, true},
		{"-5%", 10, 0, true},
		{"0x1p1%", 10, 0, true},
		{"1_0%", 10, 0, true},
		{".5%", 10, 0, true},
		{"5.%", 10, 0, true},
		{"1.2.3%", 10, 0, true},
		{"99999999999999999999", 10, 0, true},
		{"1e3", 10, 0, true},
	}
	for _, tt := range tests {
		got, err := tt.in.Limit(tt.total)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("Threshold(%q).Limit(%d) = %d, %v, want %d, err %v", tt.in, tt.total, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestThresholdUnmarshal(t *testing.T) {
	tests := []struct {
		in      string
		want    Threshold
		wantErr bool
	}{
		{`10`, "10", false},
		{`"5%"`, "5%", false},
		{`"NaN%"`, "NaN%", false}, // decoded as given; Limit refuses it
		{`true`, "", true},
		{`{}`, "", true},
	}
	for _, tt := range tests {
		var got Threshold
		err := json.Unmarshal([]byte(tt.in), &got)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("Unmarshal(%s) = %q, %v, want %q, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
