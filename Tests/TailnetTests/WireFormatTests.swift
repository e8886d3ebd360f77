import AnyJSON
import Foundation
import Tailnet
import Testing

@Suite("LocalAPI wire formats")
struct WireFormatTests {
    /// The WhoIs example of the wire reference, tab-indented as tailscaled writes it.
    static let whoisExample = """
        {
        \t"Node": {
        \t\t"ID": 6031185498112345, "StableID": "nQ8f3kCNTRL", "Name": "alice-mbp.tail1234.ts.net.", "User": 88113344,
        \t\t"Key": "nodekey:5c8f86d5fc70d924e55f02446165a5dae8f822994ad26bcf4b08fd841f9bf261",
        \t\t"KeyExpiry": "2027-02-01T10:00:00Z", "Machine": "mkey:1b2c...e9", "DiscoKey": "discokey:77aa...10",
        \t\t"Addresses": ["100.101.102.103/32", "fd7a:115c:a1e0::6d01:6667/128"],
        \t\t"Endpoints": ["203.0.113.7:41641"], "HomeDERP": 1,
        \t\t"Hostinfo": {"IPNVersion": "1.102.0-t0123abcd", "OS": "macOS", "OSVersion": "15.4", "Hostname": "alice-mbp"},
        \t\t"Created": "2025-11-02T09:12:44Z", "Cap": 142, "Online": true, "MachineAuthorized": true,
        \t\t"ComputedName": "alice-mbp", "ComputedNameWithHost": "alice-mbp"
        \t},
        \t"UserProfile": {"ID": 88113344, "LoginName": "alice@example.com", "DisplayName": "Alice Example",
        \t\t"ProfilePicURL": "https://lh3.example.com/a/photo.jpg"},
        \t"CapMap": {
        \t\t"example.com/cap/my-app": [{"role": "admin"}, {"role": "viewer"}],
        \t\t"tailscale.com/cap/tsidp": [{"users": ["*"], "resources": ["*"]}]
        \t}
        }
        """

    @Test("the WhoIs example decodes with every field tsidp uses")
    func whois() throws {
        let whois = try JSONDecoder().decode(WhoIsResponse.self, from: Data(Self.whoisExample.utf8))
        #expect(whois.node.id == 6031185498112345)
        #expect(whois.node.name == "alice-mbp.tail1234.ts.net.")
        #expect(whois.node.addresses == ["100.101.102.103/32", "fd7a:115c:a1e0::6d01:6667/128"])
        #expect(whois.node.tags.isEmpty)
        #expect(whois.node.hostinfo.os == "macOS")
        #expect(whois.userProfile.loginName == "alice@example.com")
        #expect(whois.userProfile.profilePicURL == "https://lh3.example.com/a/photo.jpg")
        #expect(
            whois.capMap["tailscale.com/cap/tsidp"] == [
                .object(["users": .array([.string("*")]), "resources": .array([.string("*")])])
            ])
        #expect(whois.capMap["example.com/cap/my-app"]?.count == 2)
    }

    @Test("null and missing fields decode as empty values")
    func tolerant() throws {
        let text = """
            {"Node": {"ID": 5, "Name": "srv.tail1234.ts.net.", "Addresses": null, "Tags": ["tag:server"], "Hostinfo": null},
             "UserProfile": {"ID": 9, "LoginName": "tagged-devices", "DisplayName": null, "Groups": null},
             "CapMap": {"tailscale.com/cap/tsidp": null}}
            """
        let whois = try JSONDecoder().decode(WhoIsResponse.self, from: Data(text.utf8))
        #expect(whois.node.addresses.isEmpty)
        #expect(whois.node.isTagged)
        #expect(whois.userProfile.displayName == "")
        #expect(whois.capMap["tailscale.com/cap/tsidp"] == [])
        let noCaps = try JSONDecoder().decode(
            WhoIsResponse.self, from: Data(#"{"Node": {"ID": 1}, "UserProfile": {"ID": 2}, "CapMap": null}"#.utf8))
        #expect(noCaps.capMap.isEmpty)
    }

    @Test("answers without Node or UserProfile, or with a non-list capability, are refused")
    func malformed() {
        for text in [
            #"{"UserProfile": {"ID": 1}}"#, #"{"Node": {"ID": 1}, "UserProfile": null}"#,
            #"{"Node": {"ID": 1}, "UserProfile": {}, "CapMap": {"x": 5}}"#, "[]",
            #"{"Node": {"ID": "five"}, "UserProfile": {}}"#,
        ] {
            #expect(throws: DecodingError.self, "\(text)") {
                try JSONDecoder().decode(WhoIsResponse.self, from: Data(text.utf8))
            }
        }
    }

    @Test("the status example decodes")
    func status() throws {
        let text = """
            {
            \t"Version": "1.103.0-t0123abcd-g89abcdef", "TUN": false, "BackendState": "Running", "HaveNodeKey": true,
            \t"AuthURL": "", "TailscaleIPs": ["100.70.1.2", "fd7a:115c:a1e0::9b01:102"],
            \t"Self": {
            \t\t"ID": "nK3b7CNTRL", "NodeID": 7212345678901, "PublicKey": "nodekey:9f0e...c1",
            \t\t"HostName": "myapp", "DNSName": "myapp.tail1234.ts.net.", "OS": "linux", "UserID": 88113344,
            \t\t"TailscaleIPs": ["100.70.1.2", "fd7a:115c:a1e0::9b01:102"],
            \t\t"CapMap": {"https": null, "funnel": null, "https://tailscale.com/cap/funnel-ports?ports=443,8443,10000": null},
            \t\t"Online": true
            \t},
            \t"Health": null, "MagicDNSSuffix": "tail1234.ts.net",
            \t"CurrentTailnet": {"Name": "example.com", "MagicDNSSuffix": "tail1234.ts.net", "MagicDNSEnabled": true},
            \t"CertDomains": ["myapp.tail1234.ts.net"], "Peer": null,
            \t"User": {"88113344": {"ID": 88113344, "LoginName": "alice@example.com", "DisplayName": "Alice Example"}},
            \t"ClientVersion": null
            }
            """
        let status = try JSONDecoder().decode(Status.self, from: Data(text.utf8))
        #expect(status.backendState == "Running")
        #expect(status.selfDNSName == "myapp.tail1234.ts.net")
        #expect(status.certDomains == ["myapp.tail1234.ts.net"])
        #expect(status.tailscaleIPs.count == 2)
        let early = try JSONDecoder().decode(
            Status.self,
            from: Data(#"{"BackendState": "NeedsLogin", "TailscaleIPs": null, "Self": null, "CertDomains": null}"#.utf8)
        )
        #expect(early.tailscaleIPs.isEmpty)
        #expect(early.selfDNSName == nil)
    }

    @Test("a cert pair splits at the key/certificate boundary")
    func certPair() throws {
        let body =
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nCCCC\n-----END CERTIFICATE-----\n"
        let pair = try CertPair(pairBody: Data(body.utf8))
        #expect(pair.keyPEM == "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")
        #expect(pair.certificatePEM.hasPrefix("-----BEGIN CERTIFICATE-----\nBBBB"))
        #expect(pair.certificatePEM.hasSuffix("CCCC\n-----END CERTIFICATE-----\n"))
        #expect(throws: LocalAPIError.self) { try CertPair(pairBody: Data("garbage".utf8)) }
        let keyTwice =
            "-----BEGIN EC PRIVATE KEY-----\nA\n-----END EC PRIVATE KEY-----\n-----BEGIN EC PRIVATE KEY-----\nB\n-----END EC PRIVATE KEY-----\n"
        #expect(throws: LocalAPIError.self) { try CertPair(pairBody: Data(keyTwice.utf8)) }
    }
}

@Suite("Dev identities files")
struct DevIdentitiesTests {
    @Test("a file of WhoIs documents parses")
    func parses() throws {
        let text =
            "[\(WireFormatTests.whoisExample), {\"Node\": {\"ID\": 2, \"Name\": \"bob.example-tailnet.ts.net.\", \"Addresses\": [\"100.64.0.2/32\"]}, \"UserProfile\": {\"ID\": 3, \"LoginName\": \"bob@example.com\"}}]"
        let identities = try DevIdentities.parse(Data(text.utf8))
        #expect(identities.map { $0?.userProfile.loginName } == ["alice@example.com", "bob@example.com"])
    }

    @Test(
        "each mistake is named in one line",
        arguments: [
            ("{", "not valid JSON"),
            ("{}", "JSON array"),
            ("[]", "no identity"),
            ("[5]", "identity 1 is not a JSON object"),
            (#"[{"UserProfile": {"LoginName": "a@example.com"}}]"#, "identity 1 has no \"Node\""),
            ("[null, 5]", "identity 2 is not a JSON object"),
            (#"[{"Node": {"Name": "a."}}]"#, "identity 1 has no \"UserProfile\""),
            (#"[{"Node": {"Name": ""}, "UserProfile": {"LoginName": "a@example.com"}}]"#, "Node.Name is empty"),
            (#"[{"Node": {"Name": "a."}, "UserProfile": {}}]"#, "LoginName is empty"),
            (
                #"[{"Node": {"Name": "a.", "Addresses": ["nope"]}, "UserProfile": {"LoginName": "a@example.com"}}]"#,
                "not an IP prefix"
            ),
            (
                #"[{"Node": {"Name": "a.", "ID": "x"}, "UserProfile": {"LoginName": "a@example.com"}}]"#,
                "identity 1: Node.ID"
            ),
        ])
    func errors(_ text: String, _ expected: String) {
        do {
            _ = try DevIdentities.parse(Data(text.utf8))
            Issue.record("\(text) should not parse")
        } catch {
            let text = "\(error)"
            #expect(text.contains(expected), "\(text)")
            #expect(!text.contains("\n"))
        }
    }

    @Test("null entries are addresses the tailnet does not know")
    func nullEntries() throws {
        let identities = try DevIdentities.parse(
            Data(#"[{"Node": {"Name": "a."}, "UserProfile": {"LoginName": "a@example.com"}}, null]"#.utf8))
        let tailnet = SimulatedTailnet(socketPath: "/unused", identities: identities)
        #expect(tailnet.resolve(address: "127.0.0.1:1")?.userProfile.loginName == "a@example.com")
        #expect(tailnet.resolve(address: "127.0.0.2:1") == nil)
    }

    @Test("a missing file says so")
    func missingFile() {
        #expect(throws: DevIdentitiesError.self) { try DevIdentities.load(path: "/nonexistent/identities.json") }
    }
}
