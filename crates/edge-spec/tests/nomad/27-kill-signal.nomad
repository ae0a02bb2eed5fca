# nginx stops gracefully on SIGQUIT.
job "nginx" {
  datacenters = ["dc1"]

  group "nginx" {
    task "nginx" {
      driver = "exec"

      kill_signal  = "SIGQUIT"
      kill_timeout = "30s"

      config {
        command = "/usr/sbin/nginx"
        args    = ["-g", "daemon off;"]
      }
    }
  }
}
