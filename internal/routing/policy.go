package routing

// Policy is the routes file's top-level policy: key, what the SMTP gateway
// decides during the session: spam and virus verdicts, the scanners'
// failure mode, client allow and deny lists and rates, and the policy
// hook. The zero value decides nothing (every check off).
type Policy struct {
	Position
	Spam     *SpamPolicy    `yaml:"spam"`
	Virus    *VirusPolicy   `yaml:"virus"`
	Scanners *ScannerPolicy `yaml:"scanners"`
	Clients  *ClientPolicy  `yaml:"clients"`
	Hook     *HookPolicy    `yaml:"hook"`
}

// SpamPolicy refuses (550 5.7.1) or quarantines a message by its spam
// score; a nil threshold is off.
type SpamPolicy struct {
	Position
	RejectAt     *float64 `yaml:"reject_at"`
	QuarantineAt *float64 `yaml:"quarantine_at"`
}

// VirusPolicy says what an infected message gets: "reject" (554 5.7.1),
// "quarantine" or "tag" (accepted, with the verdict in the JSON).
type VirusPolicy struct {
	Position
	Infected string `yaml:"infected"`
}

// ScannerPolicy bounds the scanners: Fail is "open" (accept with verdict
// "error") or "closed" (451 4.7.0); Timeout is each scanner's deadline.
type ScannerPolicy struct {
	Position
	Fail    string   `yaml:"fail"`
	Timeout Duration `yaml:"timeout"`
}

// ClientPolicy checks the connecting client: Allow and Deny are CIDRs
// checked at connect (554 5.7.1), Rate bounds messages per client.
type ClientPolicy struct {
	Position
	Allow []string    `yaml:"allow"`
	Deny  []string    `yaml:"deny"`
	Rate  *RatePolicy `yaml:"rate"`
}

// RatePolicy bounds accepted messages per client IP, per IPv4 /24 and per
// IPv6 /64 within Window; zero is no limit.
type RatePolicy struct {
	Position
	PerIP  int      `yaml:"per_ip"`
	Per24  int      `yaml:"per_24"`
	Per64  int      `yaml:"per_64"`
	Window Duration `yaml:"window"`
}

// HookPolicy is the policy hook asked at RCPT and at the end of DATA.
type HookPolicy struct {
	Position
	URL       string   `yaml:"url"`
	Secret    string   `yaml:"secret"`
	SecretEnv string   `yaml:"secret_env"`
	Timeout   Duration `yaml:"timeout"`
	Fail      string   `yaml:"fail"`
}
