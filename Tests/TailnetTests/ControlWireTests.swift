import AnyJSON
import Foundation
import Testing

@testable import Tailnet

@Suite("LocalAPI control formats")
struct ControlWireTests {
    @Test("bus notifications: state numbers, session, login URL, errors; unknown states are left out")
    func notify() throws {
        let lines = [
            #"{"Version":"1.103.0","SessionID":"3fa2c91d0b7e4a55","ErrMessage":null,"LoginFinished":null,"State":2,"BrowseToURL":null}"#,
            #"{"ErrMessage":null,"LoginFinished":{},"State":null,"BrowseToURL":null}"#,
            #"{"State":6}"#,
            #"{"State":42,"BrowseToURL":"https://login.example-tailnet.invalid/a/1"}"#,
            #"{"ErrMessage":"invalid key: unable to validate API key"}"#,
        ]
        let decoded = try lines.map { try JSONDecoder().decode(IPNNotify.self, from: Data($0.utf8)) }
        #expect(decoded[0] == IPNNotify(sessionID: "3fa2c91d0b7e4a55", state: .needsLogin))
        #expect(decoded[1].loginFinished && decoded[1].state == nil)
        #expect(decoded[2].state == .running)
        #expect(decoded[3].state == nil && decoded[3].browseToURL == "https://login.example-tailnet.invalid/a/1")
        #expect(decoded[4].errorMessage == "invalid key: unable to validate API key")
        #expect(BackendState(name: "NeedsMachineAuth") == .needsMachineAuth)
        #expect(BackendState(name: "Bogus") == nil)
    }

    @Test("start prefs keep what tailscaled had, fill what it left out, and set name, tags and WantRunning")
    func startPrefs() throws {
        let current = try JSONDecoder().decode(
            Prefs.self,
            from: Data(
                #"{"ControlURL":"","RouteAll":true,"Hostname":"old","WantRunning":false,"ShieldsUp":true,"SomeFutureField":7,"Config":{"PrivateNodeKey":"privkey:0"}}"#
                    .utf8))
        let wanted = current.forStart(hostname: "idp", tags: ["tag:idp"]).fields
        #expect(wanted["ControlURL"] == .string("https://controlplane.tailscale.com"))
        #expect(wanted["RouteAll"] == .bool(true), "an operator's choice stays")
        #expect(wanted["ShieldsUp"] == .bool(true))
        #expect(wanted["SomeFutureField"] == .int(7), "fields this version does not know go back unchanged")
        #expect(wanted["Hostname"] == .string("idp"))
        #expect(wanted["WantRunning"] == .bool(true))
        #expect(wanted["AdvertiseTags"] == .array([.string("tag:idp")]))
        #expect(wanted["CorpDNS"] == .bool(true) && wanted["NetfilterMode"] == .int(2))
        #expect(wanted["Config"] == nil, "the persisted login is never sent back")
        #expect(current.forStart(hostname: "idp", tags: nil).fields["AdvertiseTags"] == nil)

        let body =
            try JSONSerialization.jsonObject(
                with: JSONEncoder().encode(StartOptions(updatePrefs: Prefs(fields: wanted), authKey: "tskey-auth-x")))
            as? [String: Any]
        #expect(body?["AuthKey"] as? String == "tskey-auth-x")
        #expect(body?["FrontendLogID"] as? String == "")
        #expect((body?["UpdatePrefs"] as? [String: Any])?["Hostname"] as? String == "idp")
    }

    @Test("Funnel needs https, funnel and the port in funnel-ports (single ports and ranges)")
    func funnelAccess() {
        let ports = "https://tailscale.com/cap/funnel-ports?ports=443,8443,10000-10010"
        let node = SelfStatus(
            id: "n1", hostName: "idp", dnsName: "idp.example.ts.net.", tailscaleIPs: [],
            capabilities: ["https", "funnel", ports])
        #expect(node.funnelRefusal(port: 443) == nil)
        #expect(node.funnelRefusal(port: 10005) == nil)
        #expect(node.funnelRefusal(port: 8080)?.contains("443,8443,10000-10010") == true)
        var noFunnel = node
        noFunnel.capabilities = ["https", ports]
        #expect(noFunnel.funnelRefusal(port: 443)?.contains("funnel") == true)
        var noHTTPS = node
        noHTTPS.capabilities = ["funnel", ports]
        #expect(noHTTPS.funnelRefusal(port: 443)?.contains("HTTPS") == true)
        var noPorts = node
        noPorts.capabilities = ["https", "funnel"]
        #expect(noPorts.funnelRefusal(port: 443) != nil)
    }

    @Test("status decodes the node's attributes, MagicDNS and the login URL")
    func status() throws {
        let text = #"""
            {"BackendState":"NeedsLogin","AuthURL":"https://login.example-tailnet.invalid/a/2","Health":["not logged in"],
             "Self":{"ID":"n1","DNSName":"idp.example-tailnet.ts.net.","CapMap":{"https":null,"funnel":null}},
             "CurrentTailnet":{"Name":"example.com","MagicDNSSuffix":"example-tailnet.ts.net","MagicDNSEnabled":true}}
            """#
        let status = try JSONDecoder().decode(Status.self, from: Data(text.utf8))
        #expect(status.authURL == "https://login.example-tailnet.invalid/a/2")
        #expect(status.health == ["not logged in"])
        #expect(status.magicDNSEnabled == true)
        #expect(status.selfNode?.capabilities == ["funnel", "https"])
        let again = try JSONDecoder().decode(Status.self, from: JSONEncoder().encode(status))
        #expect(again == status)
    }

    @Test("serve config: a foreground entry is added and removed without touching anything else")
    func serveConfig() throws {
        let text = #"""
            {"TCP":{"8443":{"HTTPS":true}},"Web":{"idp.example-tailnet.ts.net:8443":{"Handlers":{"/":{"Text":"hi"}}}},
             "Services":{"svc:other":{"Tun":true}},"Foreground":{"otherSession":{"TCP":{"10000":{"HTTPS":true}}}}}
            """#
        let original = try JSONDecoder().decode(ServeConfig.self, from: Data(text.utf8))
        let host = "idp.example-tailnet.ts.net:443"
        #expect(!original.claims(port: 443, hostPort: host, exceptSession: "mine"))
        #expect(original.claims(port: 8443, hostPort: "idp.example-tailnet.ts.net:8443", exceptSession: "mine"))
        #expect(original.claims(port: 10000, hostPort: "idp.example-tailnet.ts.net:10000", exceptSession: "mine"))
        var config = original
        let entry = ServeConfig.proxy(port: 443, hostPort: host, target: "http://127.0.0.1:40001", funnel: true)
        config.setForeground("mine", entry)
        #expect(config.foreground("mine") == entry)
        #expect(entry.fields["AllowFunnel"] == .object([host: .bool(true)]))
        #expect(
            entry.fields["Web"]
                == .object([
                    host: .object(["Handlers": .object(["/": .object(["Proxy": .string("http://127.0.0.1:40001")])])])
                ]))
        #expect(!config.claims(port: 443, hostPort: host, exceptSession: "mine"), "our own entry is not a conflict")
        #expect(config.claims(port: 443, hostPort: host, exceptSession: "someone-else"))
        config.setForeground("mine", nil)
        #expect(config == original)
        #expect(try JSONDecoder().decode(ServeConfig.self, from: Data("null".utf8)) == ServeConfig())
    }
}
