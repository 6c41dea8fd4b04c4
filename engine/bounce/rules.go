package bounce

import (
	"regexp"

	"github.com/sluice-mta/sluice/engine/reply"
)

// textRule builds a built-in rule. Its pattern is written in lower case and
// matched against the lower-cased, normalized reply text (no code, no
// status): that is how it is case-insensitive, and cheaper than (?i).
func textRule(cat, pattern string) Rule {
	return Rule{Pattern: regexp.MustCompile(pattern), Category: cat}
}

// builtinText holds the built-in text rules, tried in this order after the
// operator's rules; the first match wins. They are drawn from real bounce
// texts (Postfix, Sendmail, Exim, qmail, Exchange/Office 365, Gmail, Yahoo,
// iCloud and others). The order puts the specific before the general:
//
//   - virus, greylisting, relaying, authentication (SPF/DKIM/DMARC) and spam
//     come first, because their replies often also say "rejected" or name the
//     recipient;
//   - sender problems come before recipient problems ("Sender address
//     rejected: Domain not found" is the sender's fault);
//   - rate limits come after spam, so "rate limited due to IP reputation" is
//     spam-related;
//   - a temporary DNS failure is routing-errors, checked before bad-domain,
//     which is reserved for names that do not exist (NXDOMAIN, null MX),
//     because bad-domain triggers suppression;
//   - quota comes before inactive-mailbox: Gmail's "inbox is out of storage
//     space and inactive" is a quota reply (5.2.2);
//   - message size ("message too large", 5.3.4) is content-related, as in the
//     status table;
//   - greylisting, rate limits and the generic "denied/blocked/policy"
//     wording are policy-related; a bare "blocked" is not taken as spam.
//
// This slice is never modified after package initialization.
var builtinText = compile([]Rule{
	textRule(VirusRelated, `\bviruse?s?\b|malware|\binfected\b|trojan|ransomware`),
	// DOMAIN.md §4: "greylist", "greylisted", "greylisting".
	textRule(PolicyRelated, `gr[ae]y[- ]?list`),
	textRule(RelayingIssues, `relay(ing)? (access )?(denied|not (permitted|allowed|authori[sz]ed)|prohibited|refused)|unable to relay|(cannot|can't|not permitted to|we do not|will not) relay|no relaying|relaying (is )?(denied|prohibited)|not an open relay|allowed rcpthosts`),
	textRule(PolicyRelated, `\bspf\b|\bdkim\b|\bdmarc\b|authentication (failed|failure|required|level)|not authenticated|unauthenticated|as permitted sender`),
	textRule(SpamRelated, `spam|\bjunk\b|\bu\.?[bc]\.?e\b|unsolicited|bulk (e-?)?mail|block ?list|black ?list|deny ?list|\bdnsbl\b|\brbl\b|realtime blackhole|reputation|\[tss?\d+\]|user complaints|banned sending ip|(ip|address|host|sender) (is |has been )?(banned|blacklisted|blocklisted)|(is|are|been|currently) listed (at|on|in|by) |\bs3150\b`),
	textRule(InvalidSender, `sender (address|domain|e-?mail)? ?(rejected|denied|invalid|not (found|valid|allowed|accepted))|sender (address |domain )?(verification|verify) failed|(invalid|unknown|bad|illegal|unverified|unroutable|unrouteable) sender|sender (domain )?(must|does not|doesn't) (exist|resolve)|domain of sender address|sender (is )?(rejected|invalid|unknown)|(from|mail from|return[- ]path) (address |domain )?(rejected|invalid|not accepted)`),
	textRule(PolicyRelated, `rate[- ]?limit|throttl|too many (connections|messages|mails|sessions|concurrent)|connection limit|exceeded the (rate|connection) limit|receiving (mail|messages)? ?(at a rate|too quickly)|sending rate|unexpected volume|#?\brl0*\d+\b`),
	textRule(MessageExpired, `message (has )?expired|expired (in|after|while) |too long in (the )?queue|been in (the )?queue too long|delivery (time|period) (has )?expired|retry time-?out exceeded|maximum (queue|delivery) (time|lifetime)|queue ?time exceeded|lifetime exceeded|message timed out`),
	textRule(RoutingErrors, `host not found, try again|temporary (dns|lookup|name service|resolver) (failure|error)|dns (temporary )?(failure|timeout|servfail)|\bservfail\b|name server timeout`),
	textRule(BadDomain, `host or domain name not found|domain (name )?not found|no such domain|unknown domain|domain (does ?n[o']t exist|not exist|is (invalid|not valid))|(invalid|bad|non-?existent|unresolvable|unroutable|unrouteable) (mail )?domain|no mx (record|host)|null ?mx|nulled mx|accepts no mail|domain does not accept (any )?mail|\bnxdomain\b|host not found|name service error|(hostname|host name) (lookup failed|not found|does not resolve)`),
	textRule(QuotaIssues, `quota|mail ?box (is )?full|(mailbox|inbox|mail box|account) (is )?(full|out of)|insufficient (system )?(storage|space|disk)|out of (storage|disk|space)|storage (space|allocation|limit)|not enough (disk |storage )?space|exceed(ed|s)? (the |its |his |her )?(storage|mailbox size|mailbox limit|mailbox capacity)|mailbox size limit|disk (is )?full|no space left|full mailbox|mailbox (has )?exceeded`),
	textRule(InactiveMailbox, `(account|mailbox|mail box|user|recipient|address|inbox) (is |has been |was )?(temporarily |permanently )?(disabled|inactive|deactivated|de-activated|suspended|closed|frozen|locked|expired|terminated|discontinued|no longer active|no longer in use|not in use)|(disabled|inactive|deactivated|suspended|closed|dormant|frozen|locked) (account|mailbox|user|recipient|address)|no longer (active|in use|in service)|not (active|in service)\b|mailbox (is )?not enabled`),
	textRule(BadMailbox, `user unknown|unknown user|(no such|unknown|invalid|bad|illegal|non-?existent|unrouteable) (user|mail ?box|recipient|rcpt|account|address|addressee|local[- ]?part|person|destination mailbox)|(user|mailbox|recipient|address|addressee|account|local[- ]?part|recipient name|user ?name) (is )?(unknown|not found|not known|not recogni[sz]ed|unavailable|not available|invalid|not valid|rejected|couldn't be found|could not be found|no longer (exists|valid|available))|does ?n[o']t exist|doesn't exist|not exist\b|recip(ient)?notfound|mailbox unavailable|no mailbox|not (a )?(valid|registered|known) (gateway |local )?(user|recipient|mailbox|address)|is not a registered|no longer on (this )?server|has moved|not our customer|undeliverable address|couldn't be found|no valid recipients|address rejected|rcpt rejected|(user|recipient) (doesn't|does not) have an? ([\w.-]+ )?account`),
	textRule(ContentRelated, `message (is )?too (large|big)|too (large|big)\b|message size|size (limit|exceeds|exceeded)|exceeds? (the )?(maximum |fixed )?(message )?size|message length exceeds|message content|content (rejected|not accepted|violat)|prohibited (attachment|content|file)|attachment|(file|executable) (type )?(not allowed|blocked|prohibited)|too many headers|header (too long|line too long|is (invalid|malformed))|malformed (message|header|mime)|invalid (mime|header|message)|non-?ascii|8-?bit|message (body|headers?) (rejected|invalid)|contains? (a |an )?(prohibited|forbidden|banned|suspicious|dangerous)`),
	textRule(BadConnection, `connection (reset|closed|lost|dropped|broken|terminated|aborted)|lost connection|broken pipe|(conversation|session) with .* timed out|timed out while|unexpected (eof|end of file|disconnect)|(tls|ssl) (handshake |negotiation )?(failed|failure|error)|handshake (failure|failed)|certificate (verification|verify) failed|starttls failed`),
	textRule(NoAnswerFromHost, `connection (timed out|refused)|connect(ion)? time-?out|timed out|no answer|not responding|did not respond|no route to host|host (is )?(unreachable|down)|network (is )?unreachable|(unable|could ?n[o']t|cannot|failed) to connect`),
	textRule(RoutingErrors, `loops? back to myself|mail(ing)? loop|routing loop|loop detected|too many hops|hop count exceeded|too many received|unable to route|(cannot|can't) route|no route (for|to) (domain|recipient)|routing (error|failed|failure)`),
	textRule(BadConfiguration, `misconfigur|configuration (error|problem)|(reverse dns|rdns|ptr( record)?|reverse (hostname|lookup)) (missing|not found|failed|does not match|mismatch|required)|(no|missing|invalid) (ptr|reverse dns|rdns)|cannot find your (reverse )?hostname|helo (command )?rejected|(invalid|bad) (helo|ehlo)|fully-qualified hostname`),
	textRule(ProtocolErrors, `syntax error|command (not recognized|unrecognized|not implemented|out of sequence)|unrecognized command|bad sequence of commands|out of sequence|protocol (error|violation)|lost synchronization|synchronization error|improper (use|command)|invalid (command|argument|parameter)|unexpected (response|reply|greeting)|bare (lf|linefeed|cr)|line too long|too many recipients`),
	textRule(PolicyRelated, `polic(y|ies)|administrative(ly)? prohibit|prohibited|not authori[sz]ed|unauthori[sz]ed|access denied|\bdenied\b|\bblocked\b|\brefused\b|not (allowed|permitted|accepted)\b|dynamic (ip|address)|residential|smtp server of your isp|unverifi(able|ed)|unverifyable|client host rejected|tls (is )?required|must (issue|use) (a )?starttls|encryption required|\bdyn:t\d\b`),
})

// statusCategory maps an RFC 3463 enhanced status code to a category; it is
// used only when no text rule matched. The subject and detail decide; the
// class (4 or 5) only says whether the failure is temporary, which the
// category does not record.
func statusCategory(st reply.Status) string {
	switch sub, det := st[1], st[2]; sub {
	case 1: // RFC 3463 §3.2 addressing status
		switch det {
		case 2, 10: // x.1.2 bad destination system; x.1.10 null MX (RFC 7505 §4.2)
			return BadDomain
		case 7, 8: // x.1.7 bad sender mailbox syntax; x.1.8 bad sender system address
			return InvalidSender
		case 0, 1, 3, 4, 6: // other address; no such mailbox; bad syntax; ambiguous; moved
			return BadMailbox
		}
	case 2: // §3.3 mailbox status
		switch det {
		case 1: // mailbox disabled
			return InactiveMailbox
		case 2: // mailbox full
			return QuotaIssues
		case 3: // message length exceeds administrative limit
			return ContentRelated
		}
	case 3: // §3.4 mail system status
		switch det {
		case 1: // mail system full
			return QuotaIssues
		case 4: // message too big for system
			return ContentRelated
		case 5: // system incorrectly configured
			return BadConfiguration
		}
	case 4: // §3.5 network and routing status
		switch det {
		case 1: // no answer from host
			return NoAnswerFromHost
		case 2: // bad connection
			return BadConnection
		case 3, 4, 6: // x.4.3 directory (DNS) server failure: a lookup that
			// failed, not a name that does not exist, so routing-errors and not
			// bad-domain (which suppresses); x.4.4 unable to route; x.4.6 loop
			return RoutingErrors
		case 7: // delivery time expired
			return MessageExpired
		}
	case 5: // §3.6 mail delivery protocol status
		return ProtocolErrors
	case 6: // §3.7 message content or media status
		return ContentRelated
	case 7: // §3.8 security or policy status (x.7.1 included)
		return PolicyRelated
	}
	return Other
}
