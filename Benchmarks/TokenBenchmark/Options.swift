import Foundation

/// Command-line options of `tsidp-benchmark` (see Benchmarks/README.md).
struct Options: Sendable {
    /// Measured seconds per HTTP scenario and per in-process run.
    var duration: Double = 10
    /// Concurrent clients (and HTTP connections) per scenario.
    var concurrency: Int = 32
    /// Seconds of load before each measured window.
    var warmup: Double = 1
    /// Seconds per signing baseline (`openssl speed -seconds`, and each Swift loop).
    var baselineSeconds: Int = 5
    /// Skip the `openssl speed` baselines.
    var skipOpenSSL = false
    /// Scenarios to run; `nil` runs all of them.
    var only: Set<String>?
    /// Where the JSON report goes.
    var output = "benchmark-results/latest.json"
    /// Parent directory of the temporary state directories (defaults to the system temp directory).
    var stateParent: String?

    static let scenarioNames = [
        "floor", "full", "token", "refresh", "full-memory", "token-memory", "inprocess",
    ]

    static let usage = """
        usage: tsidp-benchmark [options]

          --duration SECONDS       measured seconds per scenario (default 10)
          --concurrency N          concurrent clients and HTTP connections (default 32)
          --warmup SECONDS         load before each measured window (default 1)
          --baseline-seconds N     seconds per signing baseline (default 5)
          --skip-openssl           do not run `openssl speed`
          --only LIST              comma-separated scenarios: \(scenarioNames.joined(separator: ","))
                                   (signing baselines always run; default: all)
          --output PATH            JSON report (default benchmark-results/latest.json)
          --state-parent DIR       where temporary state directories are made (default: system temp)
          -h, --help               this text

        """

    func runs(_ scenario: String) -> Bool {
        only?.contains(scenario) ?? true
    }

    static func parse(_ arguments: [String]) throws -> Options {
        var options = Options()
        var index = 0
        func value(_ name: String) throws -> String {
            index += 1
            guard index < arguments.count else { throw OptionsError("\(name) needs a value") }
            return arguments[index]
        }
        func positiveNumber(_ name: String) throws -> Double {
            let text = try value(name)
            guard let number = Double(text), number > 0, number.isFinite else {
                throw OptionsError("\(name) must be a positive number, not \(text)")
            }
            return number
        }
        while index < arguments.count {
            let argument = arguments[index]
            switch argument {
            case "--duration":
                options.duration = try positiveNumber(argument)
            case "--concurrency":
                let number = try positiveNumber(argument)
                guard number == number.rounded(), number <= 4096 else {
                    throw OptionsError("--concurrency must be a whole number from 1 to 4096")
                }
                options.concurrency = Int(number)
            case "--warmup":
                let text = try value(argument)
                guard let number = Double(text), number >= 0, number.isFinite else {
                    throw OptionsError("--warmup must be zero or a positive number, not \(text)")
                }
                options.warmup = number
            case "--baseline-seconds":
                let number = try positiveNumber(argument)
                guard number == number.rounded() else {
                    throw OptionsError("--baseline-seconds must be a whole number")
                }
                options.baselineSeconds = Int(number)
            case "--skip-openssl":
                options.skipOpenSSL = true
            case "--only":
                let names = Set(
                    try value(argument).split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
                if let unknown = names.first(where: { !scenarioNames.contains($0) }) {
                    throw OptionsError("unknown scenario \(unknown); known: \(scenarioNames.joined(separator: ", "))")
                }
                options.only = names
            case "--output":
                options.output = try value(argument)
            case "--state-parent":
                options.stateParent = try value(argument)
            case "-h", "--help":
                throw OptionsError.help
            default:
                throw OptionsError("unknown option \(argument)")
            }
            index += 1
        }
        return options
    }
}

struct OptionsError: Error, CustomStringConvertible {
    var message: String
    var isHelp = false
    init(_ message: String) { self.message = message }
    static var help: OptionsError {
        var error = OptionsError("")
        error.isHelp = true
        return error
    }
    var description: String { message }
}
